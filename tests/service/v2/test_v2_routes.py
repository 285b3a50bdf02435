"""The V2 routes in-process: every malformed request is a 4xx with the protocol's
``{"error": ...}`` naming what the model takes, never a 5xx; a swap under V2 load fails no
request and every answer's ``model_version`` is the tag that computed it; metrics and drift
are ``/predict``'s."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.service.conftest import ADMIN, N_FEATURES, PREDICT, TAG_A, TAG_B, Trained, settings_for

INFER = "/v2/models/fixture-image/infer"


def tensor(rows: list[list[float]] | None = None, **overrides: Any) -> dict[str, Any]:
    rows = rows if rows is not None else [[0.0] * N_FEATURES]
    body = {"name": "x", "datatype": "FP32", "shape": [len(rows), N_FEATURES],
            "data": [v for row in rows for v in row]}  # fmt: skip
    body.update(overrides)
    return body


def infer(client: TestClient, document: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    headers = {**PREDICT, **kwargs.pop("headers", {})}
    content = document if isinstance(document, bytes) else json.dumps(document).encode()
    response = client.post(kwargs.pop("path", INFER), content=content, headers=headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "document, words",
    [
        ({"inputs": [tensor(name="pixels")]}, "unknown input 'pixels'"),
        ({"inputs": [tensor(datatype="FP64")]}, "input datatype 'FP64'"),
        ({"inputs": [tensor(datatype="BYTES")]}, "input datatype 'BYTES'"),
        ({"inputs": [tensor(shape=[1, 5])]}, "input shape [1, 5]"),
        ({"inputs": [tensor(shape=[2, N_FEATURES])]}, f"36 values for shape [2, {N_FEATURES}]"),
        ({"inputs": [tensor(data=["a"] * N_FEATURES)]}, "must be numbers, got str"),
        ({"inputs": [tensor(data=[True] * N_FEATURES)]}, "must be numbers, got bool"),
        ({"inputs": [tensor(data=[1e39] * N_FEATURES)]}, "finite"),
        ({"inputs": [tensor(), tensor()]}, "exactly one tensor"),
        ({"inputs": []}, "exactly one tensor"),
        ([1, 2], "JSON object"),
        ({"inputs": [tensor()], "outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
        ({"inputs": [tensor()], "id": 7}, "'id' must be a string"),
        ({"inputs": [tensor(shape=[0, N_FEATURES], data=[])]}, "0 rows"),
    ],
)
def test_a_request_that_does_not_fit_is_a_400_naming_what_the_model_takes(
    client: TestClient, document: Any, words: str
) -> None:
    status, body = infer(client, document)
    assert status == 400, body
    assert words in body["error"], body


def test_nan_and_infinity_are_refused(client: TestClient) -> None:
    # json.dumps writes NaN/Infinity (not JSON, but what Python clients send).
    for value in (math.nan, math.inf):
        status, body = infer(client, {"inputs": [tensor(data=[value] * N_FEATURES)]})
        assert status == 400 and "finite" in body["error"], body


def test_binary_framing_faults_are_400s(client: TestClient) -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, N_FEATURES],
                     "parameters": {"binary_data_size": 4 * N_FEATURES}}]}  # fmt: skip
    ).encode()
    good = np.zeros(N_FEATURES, dtype="<f4").tobytes()
    cases = [
        (header + good, str(len(header) + len(good) + 1), "outside the body"),
        (header + good, "-3", "outside the body"),
        (header + good, "ten", "not a number"),
        (header + good[:-4], str(len(header)), "binary_data_size 144 with 140"),
        (header + good + b"xx", str(len(header)), "with 146 binary bytes"),
        (header[:-5] + good, str(len(header)), "does not parse"),
        (
            np.full(N_FEATURES, np.nan, dtype="<f4").tobytes(),
            "0",
            "outside the body",
        ),
    ]
    for body, length, words in cases:
        status, answer = infer(
            client,
            body,
            headers={
                "Inference-Header-Content-Length": length,
                "Content-Type": "application/octet-stream",
            },
        )
        assert status == 400 and words in answer["error"], (length, answer)
    nan = np.full(N_FEATURES, np.nan, dtype="<f4").tobytes()
    status, answer = infer(
        client, header + nan, headers={"Inference-Header-Content-Length": str(len(header))}
    )
    assert status == 400 and "finite" in answer["error"], answer


def test_access_limits_and_readiness_answer_in_the_protocols_shape(
    client: TestClient, tmp_path: Path
) -> None:
    no_token = client.post(INFER, json={"inputs": [tensor()]})
    assert no_token.status_code == 401 and "error" in no_token.json()
    wrong_version = client.post(
        "/v2/models/fixture-image/versions/exp-b/infer",
        json={"inputs": [tensor()]},
        headers=PREDICT,
    )
    assert wrong_version.status_code == 404
    assert "serves 'exp-a'" in wrong_version.json()["error"]
    huge = client.post(
        INFER, content=b"{" * 10, headers={**PREDICT, "content-length": str(50_000_000)}
    )
    assert huge.status_code == 413 and "error" in huge.json()
    deep = client.post(INFER, content=b"[" * 100_000, headers=PREDICT)
    assert deep.status_code == 400, deep.text
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/ready").status_code == 200
    settings = settings_for(str(tmp_path / "nothing-here"), tmp_path, first_load_wait_seconds=0)
    unready = TestClient(create_app(settings))
    with unready:
        assert unready.get("/v2/health/ready").status_code == 503
        answer = unready.post(INFER, json={"inputs": [tensor()]}, headers=PREDICT)
        assert answer.status_code == 503 and "no model" in answer.json()["error"]


def test_v2_answers_count_in_the_same_metrics_and_drift(
    client: TestClient, trained: Trained
) -> None:
    rows = trained.rows(4)
    status, body = infer(client, {"inputs": [tensor(rows)]})
    assert status == 200, body
    metrics = client.get("/metrics").text
    assert 'mlops_inference_duration_seconds_count{input="v2"} 1.0' in metrics
    assert (
        'mlops_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"} 1.0'
        in metrics
    )
    assert "\nmlops_drift_samples 4.0" in metrics, metrics


def test_a_swap_under_v2_load_fails_nothing_and_every_answer_names_its_model(
    client: TestClient, trained: Trained
) -> None:
    rows = trained.rows(3)
    expected = {}
    for tag, model in ((TAG_A, trained.model_a), (TAG_B, trained.model_b)):
        session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
        expected[tag] = [str(v) for v in session.run(None, {"x": np.asarray(rows, np.float32)})[0]]
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            status, body = infer(client, {"inputs": [tensor(rows)]})
            if status != 200:
                failures.append(f"{status} {body}")
                continue
            tag = body["model_version"]
            seen.add(tag)
            labels = next(o["data"] for o in body["outputs"] if o["name"] == "label")
            if labels != expected[tag]:
                failures.append(f"{tag} answered {labels}, expected {expected[tag]}")

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    for tag in (TAG_B, TAG_A, TAG_B, TAG_A):
        swap = client.post("/replace_ml_model", json={"tag": tag}, headers=ADMIN)
        assert swap.status_code == 200, swap.text
    stop.set()
    for worker in workers:
        worker.join()
    assert not failures, failures[:5]
    assert seen == {TAG_A, TAG_B}
