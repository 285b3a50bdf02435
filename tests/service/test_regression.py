"""A regression model served end to end: its card (``task: regression``) loads, ``/predict``
answers values equal to scikit-learn's, and the metrics and drift follow the predicted values
instead of class counts. The model is the template's own fixture (ridge on the bundled
diabetes data), never the example."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from machinery.modelcard import CARD_FILENAME
from machinery.registry import Registry
from service.main import create_app
from tests.service.conftest import ADMIN, ALIAS, PREDICT, settings_for
from tests.support.fixture_models import RegressionFixture, build_regression_model

TAG = "reg-a"
# float32 ONNX arithmetic against scikit-learn's float64: diabetes targets are 25..346.
RTOL, ATOL = 1e-5, 1e-3


@pytest.fixture(scope="session")
def regression(tmp_path_factory: pytest.TempPathFactory) -> RegressionFixture:
    return build_regression_model(tmp_path_factory.mktemp("service-regression"))


@pytest.fixture
def registry_dir(tmp_path: Path, regression: RegressionFixture) -> Path:
    root = tmp_path / "registry"
    registry = Registry.from_url(str(root))
    registry.publish(TAG, regression.model_dir, metrics={"rmse": 53.1, "r2": 0.45})
    registry.move_alias(ALIAS, TAG, by="test-setup")
    return root


@pytest.fixture
def client(registry_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(settings_for(str(registry_dir), tmp_path))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def predict(client: TestClient, rows: np.ndarray) -> list[float]:
    answer = client.post("/predict", json={"instances": rows.tolist()}, headers=PREDICT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_tag"] == TAG
    return [p["value"] for p in body["predictions"]]


def test_a_regression_model_loads_and_is_ready(client: TestClient) -> None:
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "model_tag": TAG}


def test_predict_answers_the_values_scikit_learn_gives(
    client: TestClient, regression: RegressionFixture
) -> None:
    rows = regression.test_x
    answer = client.post("/predict", json={"instances": rows[:2].tolist()}, headers=PREDICT)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"predictions", "model_tag"}
    assert all(set(p) == {"value"} and isinstance(p["value"], float) for p in body["predictions"])
    values = predict(client, rows)
    np.testing.assert_allclose(values, regression.expected(rows), rtol=RTOL, atol=ATOL)
    # Written as the shortest decimal of the float32 ONNX gives, not float64 noise digits.
    assert all(v == float(str(np.float32(v))) and len(repr(v)) <= 16 for v in values)


def test_a_value_that_overflows_is_null_not_invalid_json(client: TestClient) -> None:
    huge = [[3e38] * 10, [-3e38] + [3e38] * 9]
    answer = client.post("/predict", json={"instances": huge}, headers=PREDICT)
    assert answer.status_code == 200, answer.text
    values = [p["value"] for p in answer.json()["predictions"]]
    assert all(v is None or math.isfinite(v) for v in values) and None in values


def test_metrics_show_a_histogram_of_predicted_values_with_the_cards_buckets(
    client: TestClient, regression: RegressionFixture
) -> None:
    values = predict(client, regression.test_x)
    samples = scrape(client)
    buckets = {dict(k)["le"]: v for k, v in samples["mlops_predicted_value_bucket"].items()}
    assert regression.card.reference is not None
    edges = regression.card.reference.output_bins
    assert [float(le) for le in buckets] == [*edges, math.inf]
    assert buckets["+Inf"] == samples["mlops_predicted_value_count"][()] == len(values)
    assert samples["mlops_predicted_value_sum"][()] == pytest.approx(sum(values), rel=1e-5)
    for le, count in buckets.items():
        assert count == sum(v <= float(le) for v in values), le
    assert samples["mlops_drift_samples"][()] == len(values)
    # No classes: nothing counted per label, and the class signal has no value.
    assert sum(samples.get("mlops_predictions_total", {}).values()) == 0
    assert math.isnan(samples["mlops_drift_class_psi"][()])


def test_output_drift_is_calm_on_test_rows(
    client: TestClient, regression: RegressionFixture
) -> None:
    predict(client, regression.test_x)
    assert 0 <= scrape(client)["mlops_drift_output_psi"][()] < 0.3


def test_output_drift_grows_when_predictions_leave_the_training_range(
    client: TestClient, regression: RegressionFixture
) -> None:
    # Inputs far outside the training data: the predictions crowd the outer bins.
    predict(client, regression.test_x * 8.0)
    drifted = scrape(client)
    assert drifted["mlops_drift_output_psi"][()] > 1.0
    assert drifted["mlops_drift_feature_psi_max"][()] > 1.0


def test_experiment_metas_name_the_task(client: TestClient) -> None:
    answer = client.get("/get_experiment_metas", headers=PREDICT)
    assert answer.status_code == 200, answer.text
    [meta] = answer.json()["experiments"]
    assert meta["tag"] == TAG and meta["task"] == "regression" and meta["active"]


def test_an_upload_is_refused_with_a_reason(client: TestClient) -> None:
    upload = client.post(
        "/predict", files={"file": ("x.png", b"\x89PNG\r\n", "image/png")}, headers=PREDICT
    )
    assert upload.status_code == 415 and "JSON rows" in upload.text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # The card says three values per row; the model gives one.
        ({"shape": [None, 3]}, "expected (1, 3)"),
        # The card names an output the model does not have.
        ({"name": "prediction"}, "lacks outputs ['prediction']"),
    ],
)
def test_a_regression_model_whose_card_does_not_fit_is_refused(
    client: TestClient,
    regression: RegressionFixture,
    registry_dir: Path,
    tmp_path: Path,
    change: dict[str, object],
    reason: str,
) -> None:
    odd = tmp_path / "odd"
    shutil.copytree(regression.model_dir, odd)
    card = json.loads((odd / CARD_FILENAME).read_text())
    card["output"].update(change)
    (odd / CARD_FILENAME).write_text(json.dumps(card))
    Registry.from_url(str(registry_dir)).publish("reg-odd", odd, metrics={})
    answer = client.post("/replace_ml_model", json={"tag": "reg-odd"}, headers=ADMIN)
    assert answer.status_code == 422 and reason in answer.text, answer.text
    assert predict(client, regression.test_x[:1])  # the old model still answers


def test_the_open_inference_protocol_answers_a_regressors_values(
    client: TestClient, regression: RegressionFixture
) -> None:
    """V2 follows the card's task: metadata names the value output, infer returns the values
    (JSON and Triton's binary form), and an output that overflows is a 400, never NaN in JSON."""
    name = regression.card.name
    metadata = client.get(f"/v2/models/{name}", headers=PREDICT).json()
    assert metadata["outputs"] == [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
    rows = regression.test_x[:4].astype(np.float32)
    tensor = {"name": regression.card.input.name, "shape": list(rows.shape), "datatype": "FP32"}
    answer = client.post(
        f"/v2/models/{name}/infer",
        json={"inputs": [{**tensor, "data": rows.ravel().tolist()}]},
        headers=PREDICT,
    )
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert (output["name"], output["shape"]) == ("variable", [4, 1])
    np.testing.assert_allclose(output["data"], regression.expected(rows), rtol=RTOL, atol=ATOL)
    header = json.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": rows.nbytes}}],
         "parameters": {"binary_data_output": True}}  # fmt: skip
    ).encode()
    binary = client.post(
        f"/v2/models/{name}/infer",
        content=header + rows.tobytes(),
        headers={**PREDICT, "Inference-Header-Content-Length": str(len(header))},
    )
    assert binary.status_code == 200, binary.text
    length = int(binary.headers["inference-header-content-length"])
    values = np.frombuffer(binary.content[length:], dtype="<f4")
    np.testing.assert_allclose(values, regression.expected(rows), rtol=RTOL, atol=ATOL)
    huge = np.full((1, rows.shape[1]), 3e38, dtype=np.float32)
    overflow = client.post(
        f"/v2/models/{name}/infer",
        json={"inputs": [{**tensor, "shape": [1, rows.shape[1]], "data": huge.ravel().tolist()}]},
        headers=PREDICT,
    )
    assert overflow.status_code == 400 and "not a finite number" in overflow.json()["error"]
