"""``POST /feedback``: ground truth counted per published tag, on the template's fixture models
(two image classifiers, a ridge regressor), never the example. What a client sees: the answer,
each refusal's status and message, and the counters on ``/metrics`` afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from machinery.registry import Registry
from service.main import create_app
from tests.service.conftest import (
    ADMIN,
    ALIAS,
    PREDICT,
    TAG_A,
    TAG_B,
    AppFactory,
    Trained,
    bearer,
    sha256_hex,
    settings_for,
)
from tests.support.fixture_models import RegressionFixture, build_regression_model

FEEDBACK_TOKEN = "feedback-token-for-tests-0123456789"
FEEDBACK = bearer(FEEDBACK_TOKEN)
REG_TAG = "reg-a"

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(client: TestClient) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def by_tag(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["tag"]: value for labels, value in samples.get(name, {}).items()}


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    app = make_app(feedback_token_sha256=sha256_hex(FEEDBACK_TOKEN), max_feedback_items=50)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_served_tag_counts_zero_before_any_feedback(client: TestClient) -> None:
    samples = scrape(client)
    assert by_tag(samples, "mlops_feedback_total") == {TAG_A: 0.0}
    assert by_tag(samples, "mlops_feedback_correct_total") == {TAG_A: 0.0}
    assert by_tag(samples, "mlops_feedback_absolute_error_total") == {}


def test_feedback_on_real_predictions_gives_live_accuracy_per_tag(
    client: TestClient, trained: Trained
) -> None:
    rows = trained.rows(30)
    answer = client.post("/predict", json={"instances": rows}, headers=PREDICT).json()
    predicted = [p["label"] for p in answer["predictions"]]
    actual = [str(trained.test_y[i % len(trained.test_y)]) for i in range(30)]
    right = sum(p == a for p, a in zip(predicted, actual))
    items = [
        {"model_tag": answer["model_tag"], "predicted": p, "actual": a}
        for p, a in zip(predicted, actual)
    ]
    response = client.post("/feedback", json=items, headers=FEEDBACK)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 30, "tags": {TAG_A: {"count": 30, "correct": right}}}
    # One object alone, for the tag not served (published, so it may be a label), wrong.
    wrong = {"model_tag": TAG_B, "predicted": "bar", "actual": "dot"}
    response = client.post("/feedback", json=wrong, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 1, "tags": {TAG_B: {"count": 1, "correct": 0}}}
    samples = scrape(client)
    assert by_tag(samples, "mlops_feedback_total") == {TAG_A: 30.0, TAG_B: 1.0}
    assert by_tag(samples, "mlops_feedback_correct_total") == {TAG_A: right, TAG_B: 0.0}
    # The cards' test accuracies, as published (conftest: 0.96 and 0.9).
    assert by_tag(samples, "mlops_model_card_accuracy") == {TAG_A: 0.96, TAG_B: 0.9}
    assert right >= 25  # the fixture classifier is good on its held-out rows


GOOD = {"model_tag": TAG_A, "predicted": "bar", "actual": "bar"}
BAD_FEEDBACK = {
    "unknown-tag": ({**GOOD, "model_tag": "never-published"}, 404, "not a published model tag"),
    "unknown-label": (
        {**GOOD, "actual": "cat"},
        422,
        "actual 'cat' is not a class of exp-a's card (bar, dash, dot)",
    ),
    "label-not-string": ({**GOOD, "predicted": 1}, 422, "predicted 1 is not a class"),
    "missing-key": ({"model_tag": TAG_A, "actual": "bar"}, 422, 'expected {"model_tag"'),
    "extra-key": ({**GOOD, "x": 1}, 422, "['actual', 'model_tag', 'predicted', 'x']; expected"),
    "bad-tag-name": ({**GOOD, "model_tag": "../x"}, 422, "model_tag must be a tag name"),
    "tag-not-string": ({**GOOD, "model_tag": ["x"]}, 422, "model_tag must be a tag name"),
    "empty": ([], 422, "no feedback items"),
    "over-limit": (
        [GOOD] * 51,
        422,
        "51 feedback items, over the limit of 50 (MLOPS_MAX_FEEDBACK_ITEMS)",
    ),
    "not-an-object": ("just a string", 422, "body is str"),
}


@pytest.mark.parametrize(
    ("body", "status", "message"), BAD_FEEDBACK.values(), ids=BAD_FEEDBACK.keys()
)
def test_bad_feedback_is_refused_and_counts_nothing(
    client: TestClient, body: Any, status: int, message: str
) -> None:
    # A good item first: a refused batch counts none of its items.
    batch = [GOOD, body]
    for sent in (body, batch) if isinstance(body, dict) else (body,):
        response = client.post("/feedback", json=sent, headers=FEEDBACK)
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
    samples = scrape(client)
    assert by_tag(samples, "mlops_feedback_total") == {TAG_A: 0.0}
    assert "never-published" not in client.get("/metrics").text


def test_body_that_is_not_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/feedback", content=b"{oops", headers={**FEEDBACK, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body is not valid JSON")


def test_scopes(make_app: AppFactory) -> None:
    item = {"model_tag": TAG_A, "predicted": "bar", "actual": "bar"}
    app = make_app(feedback_token_sha256=sha256_hex(FEEDBACK_TOKEN))
    with TestClient(app, raise_server_exceptions=False) as client:
        missing = client.post("/feedback", json=item)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert client.post("/feedback", json=item, headers=bearer("nope")).status_code == 401
        denied = client.post("/feedback", json=item, headers=PREDICT)
        assert denied.status_code == 403
        assert denied.json()["detail"] == "token lacks scope 'feedback'"
        assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 200
        assert client.post("/feedback", json=item, headers=ADMIN).status_code == 200
        # The feedback token gives nothing else.
        row = {"instances": [[0.0] * 36]}
        assert client.post("/predict", json=row, headers=FEEDBACK).status_code == 403
        assert (
            client.post("/replace_ml_model", json={"tag": TAG_B}, headers=FEEDBACK).status_code
            == 403
        )
        assert by_tag(scrape(client), "mlops_feedback_total") == {TAG_A: 2.0}
        spec = client.get("/openapi.json").json()["paths"]["/feedback"]["post"]
        assert spec["responses"]["403"]["description"] == "token lacks scope 'feedback'"


def test_feedback_scope_from_the_token_file(registry_dir: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"feedback {sha256_hex(FEEDBACK_TOKEN)}\nadmin {sha256_hex('a' * 40)}\n")
    app = create_app(
        settings_for(str(registry_dir), tmp_path, admin_token_sha256="", token_file=token_file)
    )
    item = {"model_tag": TAG_A, "predicted": "bar", "actual": "dot"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 200
        assert client.post("/feedback", json=item, headers=bearer("a" * 40)).status_code == 200
        assert client.post("/feedback", json=item, headers=PREDICT).status_code == 403


def test_registry_down_for_a_new_tag_is_503_without_a_path(
    client: TestClient, registry_dir: Path
) -> None:
    item = {"model_tag": TAG_A, "predicted": "bar", "actual": "bar"}
    assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 200
    shutil.move(registry_dir, registry_dir.with_name("gone"))
    # A tag already checked needs no registry; a new one cannot be checked.
    assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 200
    response = client.post("/feedback", json={**item, "model_tag": TAG_B}, headers=FEEDBACK)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "registry unavailable" in response.json()["detail"]
    assert str(registry_dir.parent) not in response.text


def test_an_unknown_tag_is_not_read_again_at_once(
    client: TestClient, registry_dir: Path, trained: Trained
) -> None:
    item = {"model_tag": "exp-c", "predicted": "bar", "actual": "bar"}
    assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 404
    # Published now: still refused from memory for a while (no registry read per request) ...
    Registry.from_url(str(registry_dir)).publish("exp-c", trained.a, metrics={})
    assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 404
    # ... until that memory expires.
    book = client.app.state.container.feedback()  # type: ignore[attr-defined]
    book._unknown["exp-c"] -= 3600
    assert client.post("/feedback", json=item, headers=FEEDBACK).status_code == 200


# --- regression ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> RegressionFixture:
    return build_regression_model(tmp_path_factory.mktemp("feedback-regression"))


@pytest.fixture
def reg_client(regression: RegressionFixture, tmp_path: Path) -> Iterator[TestClient]:
    root = tmp_path / "reg-registry"
    registry = Registry.from_url(str(root))
    registry.publish(REG_TAG, regression.model_dir, metrics={"rmse": 53.1})
    registry.move_alias(ALIAS, REG_TAG, by="test-setup")
    settings = settings_for(str(root), tmp_path, feedback_token_sha256=sha256_hex(FEEDBACK_TOKEN))
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_regression_feedback_sums_the_errors(
    reg_client: TestClient, regression: RegressionFixture
) -> None:
    assert by_tag(scrape(reg_client), "mlops_feedback_absolute_error_total") == {REG_TAG: 0.0}
    rows = regression.test_x[:10]
    answer = reg_client.post("/predict", json={"instances": rows.tolist()}, headers=PREDICT)
    values = [p["value"] for p in answer.json()["predictions"]]
    actual = [float(y) for y in regression.test_y[:10]]
    items = [{"model_tag": REG_TAG, "predicted": p, "actual": a} for p, a in zip(values, actual)]
    items.append({"model_tag": REG_TAG, "predicted": 10, "actual": 13.5})  # ints are numbers
    response = reg_client.post("/feedback", json=items, headers=FEEDBACK)
    assert response.status_code == 200, response.text
    absolute = sum(abs(p - a) for p, a in zip(values, actual)) + 3.5
    squared = sum((p - a) ** 2 for p, a in zip(values, actual)) + 12.25
    assert response.json()["accepted"] == 11
    assert response.json()["tags"][REG_TAG]["absolute_error"] == pytest.approx(absolute)
    samples = scrape(reg_client)
    assert by_tag(samples, "mlops_feedback_total") == {REG_TAG: 11.0}
    assert by_tag(samples, "mlops_feedback_absolute_error_total")[REG_TAG] == pytest.approx(
        absolute
    )
    assert by_tag(samples, "mlops_feedback_squared_error_total")[REG_TAG] == pytest.approx(squared)
    # No accuracy for a regressor: neither a correct count nor a card accuracy (its card has rmse).
    assert by_tag(samples, "mlops_feedback_correct_total") == {}
    assert by_tag(samples, "mlops_model_card_accuracy") == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"model_tag": "reg-a", "predicted": NaN, "actual": 1}', "finite numbers"),
        (b'{"model_tag": "reg-a", "predicted": 1, "actual": Infinity}', "finite numbers"),
        (b'{"model_tag": "reg-a", "predicted": 1e400, "actual": 1}', "finite numbers"),
        (b'{"model_tag": "reg-a", "predicted": 1, "actual": ' + b"9" * 60 + b"}", "finite numbers"),
        (b'{"model_tag": "reg-a", "predicted": "150", "actual": 1}', "'150' is not a number"),
        (b'{"model_tag": "reg-a", "predicted": true, "actual": 1}', "True is not a number"),
        (b'{"model_tag": "reg-a", "predicted": [1, 2], "actual": 1}', "outputs a number"),
    ],
    ids=["nan", "infinity", "overflow", "huge-int", "string", "bool", "list"],
)
def test_bad_regression_values_are_422(reg_client: TestClient, raw: bytes, message: str) -> None:
    headers = {**FEEDBACK, "Content-Type": "application/json"}
    response = reg_client.post("/feedback", content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert by_tag(scrape(reg_client), "mlops_feedback_total") == {REG_TAG: 0.0}


def test_spec_takes_the_served_cards_classes_and_the_limit(client: TestClient) -> None:
    """The spec says what the code accepts (schemathesis, tests/service/test_fuzz.py, holds the
    two to it): the served card's classes, 1 to MLOPS_MAX_FEEDBACK_ITEMS items."""
    spec = client.get("/openapi.json").json()
    item, batch = spec["components"]["schemas"]["Feedback"]["oneOf"]
    assert item["properties"]["actual"]["enum"] == ["bar", "dash", "dot"]
    assert item["additionalProperties"] is False
    assert (batch["minItems"], batch["maxItems"]) == (1, 50)
    operation = spec["paths"]["/feedback"]["post"]
    assert operation["security"] == [{"bearer": []}]
