"""Aliases: moves, history, "which tag served when", and concurrent movers, on both stores."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from machinery.registry import AliasNotFound, AliasRecord, Registry, RegistryError, TagNotFound
from tests.registry.helpers import Trained


@pytest.fixture
def two_tags(registry: Registry, trained: tuple[Trained, Trained]) -> Registry:
    a, b = trained
    registry.publish("v1", a.model_dir, metrics=a.metrics)
    registry.publish("v2", b.model_dir, metrics=b.metrics)
    return registry


def test_move_show_and_history(two_tags: Registry) -> None:
    registry = two_tags
    first = registry.move_alias("prod", "v1", by="alice")
    assert (first.alias, first.tag, first.moved_by, first.previous_tag) == (
        "prod",
        "v1",
        "alice",
        None,
    )
    assert registry.alias("prod") == first

    second = registry.move_alias("prod", "v2", by="bob")
    assert second.previous_tag == "v1" and second.moved_at >= first.moved_at
    assert registry.alias("prod") == second
    assert registry.alias_history("prod") == [first, second]

    back = registry.move_alias("prod", "v1", by="carol")
    assert back.previous_tag == "v2"
    assert [r.tag for r in registry.alias_history("prod")] == ["v1", "v2", "v1"]


def test_aliases_are_independent_and_listed(two_tags: Registry) -> None:
    registry = two_tags
    registry.move_alias("staging", "v2", by="ci")
    registry.move_alias("prod", "v1", by="ci")
    registry.move_alias("prod.history", "v2", by="ci")  # its file must not clash with prod's
    assert {(r.alias, r.tag) for r in registry.aliases()} == {
        ("staging", "v2"),
        ("prod", "v1"),
        ("prod.history", "v2"),
    }
    assert [r.tag for r in registry.alias_history("staging")] == ["v2"]
    assert [r.tag for r in registry.alias_history("prod")] == ["v1"]


def test_moving_to_the_current_tag_adds_no_history_line(two_tags: Registry) -> None:
    registry = two_tags
    first = registry.move_alias("prod", "v1", by="alice")
    assert registry.move_alias("prod", "v1", by="bob") == first
    assert registry.alias_history("prod") == [first]


def test_an_alias_can_only_point_at_a_published_tag(two_tags: Registry) -> None:
    with pytest.raises(TagNotFound, match="v9"):
        two_tags.move_alias("prod", "v9", by="alice")
    with pytest.raises(AliasNotFound, match="prod"):
        two_tags.alias("prod")
    assert two_tags.alias_history("prod") == []


def test_unknown_alias(registry: Registry) -> None:
    with pytest.raises(AliasNotFound, match="prod"):
        registry.alias("prod")
    with pytest.raises(AliasNotFound):
        registry.served_at("prod", datetime.now(timezone.utc))
    assert registry.aliases() == []


def test_served_at_answers_which_tag_an_alias_pointed_at(two_tags: Registry) -> None:
    registry = two_tags
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    first = registry.move_alias("prod", "v1", by="alice")
    time.sleep(0.01)
    second = registry.move_alias("prod", "v2", by="bob")
    between = first.moved_at + (second.moved_at - first.moved_at) / 2

    assert registry.served_at("prod", before) is None
    assert registry.served_at("prod", first.moved_at) == "v1"
    assert registry.served_at("prod", between) == "v1"
    assert registry.served_at("prod", second.moved_at) == "v2"
    assert registry.served_at("prod", second.moved_at + timedelta(days=1)) == "v2"
    # Naive datetimes are UTC, what the registry stores.
    naive = between.astimezone(timezone.utc).replace(tzinfo=None)
    assert registry.served_at("prod", naive) == "v1"
    # The same instant in another zone is the same answer.
    assert registry.served_at("prod", between.astimezone(timezone(timedelta(hours=-5)))) == "v1"


def test_alias_file_and_history_follow_the_documented_layout(two_tags: Registry) -> None:
    registry = two_tags
    registry.move_alias("prod", "v1", by="alice")
    registry.move_alias("prod", "v2", by="bob")
    assert registry.store.children("aliases") == ["prod.history.jsonl", "prod.json"]
    history = registry.store.read("aliases/prod.history.jsonl")
    current = registry.store.read("aliases/prod.json")
    assert history is not None and current is not None
    lines = history.data.decode().splitlines()
    assert len(lines) == 2
    assert AliasRecord.model_validate_json(lines[-1]) == AliasRecord.model_validate_json(
        current.data
    )


def test_concurrent_movers_lose_no_history_line(
    registry_url: str, trained: tuple[Trained, Trained]
) -> None:
    a, _ = trained
    setup = Registry.from_url(registry_url)
    movers = 10
    for i in range(movers):
        setup.publish(f"t{i}", a.model_dir, metrics={})
    clients = [Registry.from_url(registry_url) for _ in range(movers)]
    start = threading.Barrier(movers)
    failures: list[RegistryError] = []

    def move(i: int) -> None:
        start.wait()
        try:
            clients[i].move_alias("prod", f"t{i}", by=f"mover-{i}")
        except RegistryError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=move, args=(i,)) for i in range(movers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    history = setup.alias_history("prod")
    assert sorted(r.tag for r in history) == sorted(f"t{i}" for i in range(movers))
    # Every line names the tag the line before it set: no move was overwritten.
    assert history[0].previous_tag is None
    assert all(later.previous_tag == earlier.tag for earlier, later in zip(history, history[1:]))
    assert setup.alias("prod") == history[-1]


def test_alias_names_are_validated(two_tags: Registry) -> None:
    with pytest.raises(RegistryError, match="not a valid alias name"):
        two_tags.move_alias("../prod", "v1", by="alice")
    with pytest.raises(RegistryError, match="not a valid alias name"):
        two_tags.alias("a/b")
