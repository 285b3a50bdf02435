"""Hot swap through the real app and registry: every fault leaves the old model serving."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from dependency_injector import providers
from fastapi.testclient import TestClient

from machinery.modelcard import CARD_FILENAME, MODEL_FILENAME, sha256_file
from machinery.registry import Registry, RegistryUnavailable
from service.container import Container
from service.main import create_app
from tests.service.conftest import (
    ADMIN,
    ALIAS,
    PREDICT,
    TAG_A,
    TAG_B,
    AppFactory,
    Trained,
    ZERO_ROW,
    publish_both,
    settings_for,
)
from tests.support.s3 import S3Server, use_s3_env


def served_tag(client: TestClient, trained: Trained) -> str:
    body = trained.image(0)
    response = client.post(
        "/predict", content=body, headers={**PREDICT, "Content-Type": "image/png"}
    )
    assert response.status_code == 200, response.text
    tag: str = response.json()["model_tag"]
    return tag


def swap(client: TestClient, tag: str) -> tuple[int, str]:
    response = client.post("/replace_ml_model", json={"tag": tag}, headers=ADMIN)
    return response.status_code, response.text


def test_swap_switches_model_and_moves_alias(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    assert served_tag(client, trained) == TAG_A
    status, text = swap(client, TAG_B)
    assert status == 200, text
    assert json.loads(text)["previous_tag"] == TAG_A
    assert served_tag(client, trained) == TAG_B
    record = Registry.from_url(str(registry_dir)).alias(ALIAS)
    assert record.tag == TAG_B
    assert record.previous_tag == TAG_A
    assert record.moved_by.startswith("service:token:")


def test_swap_to_the_serving_tag_is_idempotent(client: TestClient, trained: Trained) -> None:
    status, text = swap(client, TAG_A)
    assert status == 200
    assert json.loads(text)["changed"] is False
    assert served_tag(client, trained) == TAG_A


def test_unknown_tag_is_404_and_old_model_serves(client: TestClient, trained: Trained) -> None:
    status, text = swap(client, "no-such-tag")
    assert status == 404
    assert "no-such-tag" in text
    assert served_tag(client, trained) == TAG_A


def test_invalid_tag_name_is_422(client: TestClient, trained: Trained) -> None:
    status, _ = swap(client, "../../etc/passwd")
    assert status == 422
    assert served_tag(client, trained) == TAG_A


def test_checksum_mismatch_is_refused_and_old_model_serves(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    # Tampered storage: valid ONNX bytes, but not the ones meta.json recorded for the tag.
    shutil.copy(trained.a / MODEL_FILENAME, registry_dir / "models" / TAG_B / MODEL_FILENAME)
    status, text = swap(client, TAG_B)
    assert status == 422
    assert "sha256" in text
    assert served_tag(client, trained) == TAG_A
    assert Registry.from_url(str(registry_dir)).alias(ALIAS).tag == TAG_A


def test_file_that_is_not_onnx_is_refused_and_old_model_serves(
    client: TestClient, trained: Trained, registry_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MODEL_FILENAME).write_bytes(b"this is not an ONNX model at all")
    card = json.loads((trained.a / CARD_FILENAME).read_text())
    card["onnx_sha256"] = sha256_file(broken / MODEL_FILENAME)
    (broken / CARD_FILENAME).write_text(json.dumps(card))
    Registry.from_url(str(registry_dir)).publish("exp-broken", broken, metrics={})
    status, text = swap(client, "exp-broken")
    assert status == 422
    assert "ONNX" in text
    assert served_tag(client, trained) == TAG_A
    assert Registry.from_url(str(registry_dir)).alias(ALIAS).tag == TAG_A


def test_model_whose_card_does_not_fit_is_refused(
    client: TestClient, trained: Trained, registry_dir: Path, tmp_path: Path
) -> None:
    # Real ONNX, but the card says the input is 16 wide: the warm-up prediction catches it.
    odd = tmp_path / "odd"
    shutil.copytree(trained.a, odd)
    card = json.loads((odd / CARD_FILENAME).read_text())
    card["input"]["shape"] = [None, 16]
    card["preprocessing"].update(width=4, height=4)
    (odd / CARD_FILENAME).write_text(json.dumps(card))
    Registry.from_url(str(registry_dir)).publish("exp-odd", odd, metrics={})
    status, text = swap(client, "exp-odd")
    assert status == 422
    assert "warm-up" in text
    assert served_tag(client, trained) == TAG_A


def test_pinned_tag_refuses_swap_with_409(make_app: AppFactory, trained: Trained) -> None:
    with TestClient(make_app(model_tag=TAG_B)) as client:
        assert served_tag(client, trained) == TAG_B  # the pin wins over the alias (TAG_A)
        status, text = swap(client, TAG_A)
        assert status == 409
        assert "pins tag" in text and TAG_B in text
        assert served_tag(client, trained) == TAG_B


def test_alias_move_failure_keeps_old_model(
    registry_dir: Path, tmp_path: Path, trained: Trained
) -> None:
    """Fault injection: the registry refuses the alias move after the new model loaded."""

    class AliasWriteFails(Registry):
        def move_alias(self, name: str, tag: str, *, by: str):  # type: ignore[no-untyped-def]
            raise RegistryUnavailable("injected: alias write timed out")

    container = Container()
    container.registry.override(
        providers.Singleton(lambda: AliasWriteFails(Registry.from_url(str(registry_dir)).store))
    )
    app = create_app(settings_for(str(registry_dir), tmp_path), container=container)
    with TestClient(app) as client:
        status, text = swap(client, TAG_B)
        assert status == 503
        assert "injected" in text
        assert served_tag(client, trained) == TAG_A
    assert Registry.from_url(str(registry_dir)).alias(ALIAS).tag == TAG_A


def test_concurrent_swaps_are_serialized(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    results: list[int] = []

    def call(tag: str) -> None:
        results.append(swap(client, tag)[0])

    threads = [threading.Thread(target=call, args=(t,)) for t in [TAG_B, TAG_A] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    # Whatever order they ran in, what is served is what the alias says.
    assert served_tag(client, trained) == Registry.from_url(str(registry_dir)).alias(ALIAS).tag


def test_missing_alias_starts_unready_then_converges(
    tmp_path: Path, trained: Trained, make_app: AppFactory
) -> None:
    empty = tmp_path / "empty-registry"
    registry = Registry.from_url(str(empty))
    registry.publish(TAG_A, trained.a, metrics={})
    app = create_app(settings_for(str(empty), tmp_path))
    with TestClient(app) as client:
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 503
        assert client.post("/predict", json=ZERO_ROW, headers=PREDICT).status_code == 503
        registry.move_alias(ALIAS, TAG_A, by="test")
        client.portal.call(app.state.container.model_store().poll_once)  # type: ignore[union-attr]
        assert client.get("/health/ready").json() == {"status": "ready", "model_tag": TAG_A}


def test_poll_follows_an_alias_moved_elsewhere(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    Registry.from_url(str(registry_dir)).move_alias(ALIAS, TAG_B, by="ci")
    store = client.app.state.container.model_store()  # type: ignore[attr-defined]
    client.portal.call(store.poll_once)  # type: ignore[union-attr]
    assert served_tag(client, trained) == TAG_B


@pytest.mark.integration
def test_s3_registry_swap_and_registry_down(
    private_s3_server: S3Server,
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_s3_env(monkeypatch, private_s3_server, tmp_path)
    bucket = private_s3_server.make_bucket()
    url = f"s3://{bucket}/registry"
    publish_both(Registry.from_url(url), trained)
    app = create_app(settings_for(url, tmp_path))
    with TestClient(app) as client:
        assert served_tag(client, trained) == TAG_A
        assert swap(client, TAG_B)[0] == 200
        assert served_tag(client, trained) == TAG_B
        metas = client.get("/get_experiment_metas", headers=PREDICT).json()
        assert {m["tag"]: m["active"] for m in metas["experiments"]} == {TAG_A: False, TAG_B: True}

        private_s3_server.stop()
        status, text = swap(client, TAG_A)
        assert status == 503
        assert "unavailable" in text
        assert served_tag(client, trained) == TAG_B
        assert client.get("/get_experiment_metas", headers=PREDICT).status_code == 503
        assert client.get("/health/ready").status_code == 200

        private_s3_server.start()
        assert swap(client, TAG_A)[0] == 200
        assert served_tag(client, trained) == TAG_A
    assert Registry.from_url(url).alias(ALIAS).tag == TAG_A


@pytest.mark.integration
def test_s3_registry_swap_on_shared_server(
    s3_server: S3Server,
    s3_bucket: str,
    trained: Trained,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry-backed path against the session's real S3 (credentials enforced)."""
    use_s3_env(monkeypatch, s3_server, tmp_path)
    url = f"s3://{s3_bucket}/reg"
    publish_both(Registry.from_url(url), trained, alias_tag=TAG_B)
    with TestClient(create_app(settings_for(url, tmp_path))) as client:
        assert served_tag(client, trained) == TAG_B
        assert swap(client, TAG_A)[0] == 200
        assert served_tag(client, trained) == TAG_A
    history = Registry.from_url(url).alias_history(ALIAS)
    assert [r.tag for r in history] == [TAG_B, TAG_A]


def test_in_flight_request_finishes_on_the_model_it_started_with(
    make_app: AppFactory, trained: Trained
) -> None:
    """A request whose body is still arriving when a swap completes is answered by the old
    model; the next request gets the new one."""
    app = make_app()
    image = trained.image(0)

    async def request(receive_gate: asyncio.Event | None) -> dict[str, object]:
        async def receive() -> dict[str, object]:
            if receive_gate is not None:
                await receive_gate.wait()
            return {"type": "http.request", "body": image, "more_body": False}

        messages: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            messages.append(message)

        headers = [(b"content-type", b"image/png")] + [
            (k.lower().encode(), v.encode()) for k, v in PREDICT.items()
        ]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
            "root_path": "", "query_string": b"", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        await app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in messages)  # type: ignore[misc]
        result: dict[str, object] = json.loads(body)
        return result

    async def scenario() -> None:
        store = app.state.container.model_store()
        await store.start()
        gate = asyncio.Event()
        in_flight = asyncio.create_task(request(gate))
        await asyncio.sleep(0.2)  # the handler has picked its model and waits for the body
        await store.swap(TAG_B, by="test")
        gate.set()
        assert (await in_flight)["model_tag"] == TAG_A
        assert (await request(None))["model_tag"] == TAG_B
        await store.stop()

    asyncio.run(scenario())


def test_a_deleted_registry_is_503_never_absent(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    shutil.rmtree(registry_dir)
    status, text = swap(client, TAG_B)
    assert status == 503, text
    assert "does not exist" in text
    listing = client.get("/get_experiment_metas", headers=PREDICT)
    assert listing.status_code == 503, listing.text
    assert served_tag(client, trained) == TAG_A
    metrics = client.get("/metrics").text
    assert (
        'mlops_model_swap_failures_total{reason="registry_unavailable",trigger="request"} 1.0'
        in (metrics)
    )


def test_a_malformed_meta_is_listed_apart_and_a_swap_to_it_is_422(
    client: TestClient, trained: Trained, registry_dir: Path
) -> None:
    (registry_dir / "models" / TAG_B / "meta.json").write_text('{"tag": "half written')
    listing = client.get("/get_experiment_metas", headers=PREDICT)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert [m["tag"] for m in body["experiments"]] == [TAG_A]
    assert [e["tag"] for e in body["invalid"]] == [TAG_B]
    assert "not a valid meta.json" in body["invalid"][0]["error"]
    status, text = swap(client, TAG_B)
    assert status == 422, text
    assert served_tag(client, trained) == TAG_A
    metrics = client.get("/metrics").text
    assert 'mlops_model_swap_failures_total{reason="invalid_model",trigger="request"} 1.0' in (
        metrics
    )


def _poll_failures(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("mlops_model_swap_failures_total{") and 'trigger="poll"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_tag_that_fails_to_load_is_backed_off_not_fetched_every_poll(
    make_app: AppFactory, trained: Trained, registry_dir: Path
) -> None:
    poll = 0.05
    with TestClient(make_app(alias_poll_seconds=poll)) as client:
        # The alias moves elsewhere to a tag whose stored bytes were tampered with.
        shutil.copy(trained.a / MODEL_FILENAME, registry_dir / "models" / TAG_B / MODEL_FILENAME)
        Registry.from_url(str(registry_dir)).move_alias(ALIAS, TAG_B, by="ci")
        seconds = 1.6  # 32 polls; back-off 0.05 · 2^n allows 5 tries (0, .05, .15, .35, .75, 1.55)
        time.sleep(seconds)
        tries = _poll_failures(client)
        print(f"failed loads of one tag in {seconds}s at a {poll}s poll: {tries:.0f}")
        assert 1 <= tries <= 7, tries
        assert served_tag(client, trained) == TAG_A  # the old model keeps serving
        # A request swap always tries (an operator asked), and a good tag is not held back.
        assert swap(client, TAG_B)[0] == 422
        Registry.from_url(str(registry_dir)).move_alias(ALIAS, TAG_A, by="ci")
        time.sleep(3 * poll)
        assert served_tag(client, trained) == TAG_A
