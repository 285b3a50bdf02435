"""``make bench-service`` follows the model card: the request it sends (a multipart picture for
an image card, a JSON row for a card without preprocessing) is answered 200 by the service and
by the hand-written baseline app, for both kinds of fixture model."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench import harness
from machinery.registry import Registry
from tests.service.conftest import PREDICT, AppFactory


@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_bench_request_is_answered_by_both_apps(
    kind: str,
    make_app: AppFactory,
    registry_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_dir = harness.resolve_model(f"fixture-{kind}", tmp_path)
    card = harness.model_card(model_dir)
    if card.preprocessing is not None:
        body, content_type = harness.multipart(harness.sample_picture(card)), harness.FORM_TYPE
    else:
        body, content_type = harness.sample_rows(card), "application/json"
    Registry.from_url(str(registry_dir)).publish("bench", model_dir, metrics={})
    headers = {**PREDICT, "Content-Type": content_type}
    with TestClient(make_app(model_tag="bench")) as ours:
        response = ours.post("/predict", content=body, headers=headers)
        assert response.status_code == 200, response.text
    monkeypatch.setenv("BENCH_MODEL_DIR", str(model_dir))
    import bench.baseline_app

    baseline = importlib.reload(bench.baseline_app)
    with TestClient(baseline.app) as hand_written:
        answer = hand_written.post("/predict", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
