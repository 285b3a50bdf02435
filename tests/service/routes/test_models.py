"""``/get_experiment_metas``: what is published, from which commit, and which is serving."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import ADMIN, ALIAS, PREDICT, TAG_A, TAG_B, AppFactory, Trained


def test_experiments_list_every_tag_with_its_record(client: TestClient, trained: Trained) -> None:
    body = client.get("/get_experiment_metas", headers=PREDICT).json()
    assert body["alias"] == ALIAS and body["active_tag"] == TAG_A and body["pinned_tag"] is None
    by_tag = {e["tag"]: e for e in body["experiments"]}
    assert set(by_tag) == {TAG_A, TAG_B}
    assert [e["tag"] for e in body["experiments"]] == [TAG_B, TAG_A]  # newest first
    a = by_tag[TAG_A]
    assert a["active"] is True and by_tag[TAG_B]["active"] is False
    assert a["metrics"] == {"accuracy": 0.96}
    card = trained.model_a.card
    assert a["params"] == card.params and a["estimator"] == card.estimator
    assert by_tag[TAG_B]["estimator"] == trained.model_b.card.estimator != card.estimator
    assert len(a["sha256"]) == 64 and a["data_version"] and a["commit"] and a["created"]


def test_active_follows_the_swap(client: TestClient) -> None:
    assert client.post("/replace_ml_model", json={"tag": TAG_B}, headers=ADMIN).status_code == 200
    body = client.get("/get_experiment_metas", headers=PREDICT).json()
    assert {e["tag"]: e["active"] for e in body["experiments"]} == {TAG_A: False, TAG_B: True}


def test_pinned_deployment_says_so(make_app: AppFactory) -> None:
    with TestClient(make_app(model_tag=TAG_B)) as client:
        body = client.get("/get_experiment_metas", headers=PREDICT).json()
        assert body["pinned_tag"] == TAG_B and body["active_tag"] == TAG_B


def test_swap_body_must_name_a_tag(client: TestClient) -> None:
    for body in ({}, {"tag": ""}, {"tag": 5}, {"name": TAG_B}):
        response = client.post("/replace_ml_model", json=body, headers=ADMIN)
        assert response.status_code == 422


def test_huge_swap_body_is_413(make_app: AppFactory) -> None:
    with TestClient(make_app(max_upload_bytes=1000)) as client:
        body = '{"tag": "' + "a" * 5000 + '"}'
        headers = {**ADMIN, "Content-Type": "application/json"}
        assert client.post("/replace_ml_model", content=body, headers=headers).status_code == 413
