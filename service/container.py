"""The dependency-injector container: every long-lived component, built once per app.

Tests build the real container and override a provider only to inject a fault.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from machinery.registry import Registry
from service.auth import Authenticator
from service.feedback import FeedbackBook
from service.metrics import Metrics
from service.model_store import ModelStore
from service.settings import Settings


class Container(containers.DeclarativeContainer):
    settings = providers.Singleton(Settings)
    metrics = providers.Singleton(Metrics)
    registry = providers.Singleton(Registry.from_url, settings.provided.registry_url)
    model_store = providers.Singleton(
        ModelStore, registry=registry, settings=settings, metrics=metrics
    )
    authenticator = providers.Singleton(Authenticator.from_settings, settings)
    feedback = providers.Singleton(FeedbackBook, store=model_store, metrics=metrics)
