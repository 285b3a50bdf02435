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


def test_bench_v2_requests_are_answered_alike_by_both_apps(
    make_app: AppFactory,
    registry_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The V2 bodies ``bench/v2.py`` sends: JSON (ours and the hand-written endpoint give the
    same labels and probabilities) and Triton's binary form (ours)."""
    from bench import v2

    model_dir = harness.resolve_model("fixture-tabular", tmp_path)
    card = harness.model_card(model_dir)
    Registry.from_url(str(registry_dir)).publish("bench", model_dir, metrics={})
    path = f"/v2/models/{card.name}/infer"
    body = v2.json_request(card)
    with TestClient(make_app(model_tag="bench")) as ours:
        answer = ours.post(path, content=body, headers=PREDICT)
        assert answer.status_code == 200, answer.text
        binary, length = v2.binary_request(card)
        headers = {**PREDICT, "Inference-Header-Content-Length": str(length)}
        raw = ours.post(path, content=binary, headers=headers)
        assert raw.status_code == 200, raw.text
        assert "binary_data_size" in raw.content[: int(raw.headers[v2.HEADER])].decode()
    monkeypatch.setenv("BENCH_MODEL_DIR", str(model_dir))
    import bench.baseline_app

    baseline = importlib.reload(bench.baseline_app)
    with TestClient(baseline.app) as hand_written:
        theirs = hand_written.post(path, content=body)
        assert theirs.status_code == 200, theirs.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    expected = {o["name"]: o["data"] for o in theirs.json()["outputs"]}
    assert outputs["label"] == expected["label"]
    assert outputs["probabilities"] == pytest.approx(expected["probabilities"], rel=1e-6)
