"""Access: static bearer tokens (sha256 digests, scopes) and OIDC JWTs against a real JWKS."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from service.__main__ import main as service_main
from service.auth import AuthConfigError, Authenticator, OidcVerifier, refuse_open_exposure
from service.main import create_app
from service.settings import Settings
from tests.service.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    PREDICT,
    PREDICT_TOKEN,
    TAG_A,
    ZERO_ROW,
    AppFactory,
    bearer,
    sha256_hex,
    settings_for,
)

ROW = ZERO_ROW


def test_predict_needs_a_token(client: TestClient) -> None:
    response = client.post("/predict", json=ROW)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token", "Basic dXNlcjpwYXNz", f"Token {PREDICT_TOKEN}", "Bearer ", "Bearer"],
)
def test_bad_credentials_are_401(client: TestClient, header: str) -> None:
    assert client.post("/predict", json=ROW, headers={"Authorization": header}).status_code == 401


def test_predict_token_predicts(client: TestClient) -> None:
    response = client.post("/predict", json=ROW, headers=PREDICT)
    assert response.status_code == 200
    assert response.json()["model_tag"] == TAG_A


def test_predict_token_cannot_swap(client: TestClient) -> None:
    response = client.post("/replace_ml_model", json={"tag": TAG_A}, headers=PREDICT)
    assert response.status_code == 403
    assert "admin" in response.json()["detail"]


def test_admin_token_swaps_and_predicts(client: TestClient) -> None:
    assert client.post("/replace_ml_model", json={"tag": TAG_A}, headers=ADMIN).status_code == 200
    assert client.post("/predict", json=ROW, headers=ADMIN).status_code == 200


def test_swap_without_token_is_401(client: TestClient) -> None:
    assert client.post("/replace_ml_model", json={"tag": TAG_A}).status_code == 401


def test_probes_and_metrics_stay_open(client: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_experiments_need_a_token(client: TestClient) -> None:
    assert client.get("/get_experiment_metas").status_code == 401
    assert client.get("/get_experiment_metas", headers=PREDICT).status_code == 200


def test_refuses_to_start_without_admin_token(make_app: AppFactory) -> None:
    with pytest.raises(AuthConfigError, match="no admin token"):
        make_app(admin_token_sha256="")


@pytest.mark.parametrize("weak", ["", "changeme", "admin"])
def test_refuses_to_start_with_default_admin_token(make_app: AppFactory, weak: str) -> None:
    with pytest.raises(AuthConfigError, match="well-known default"):
        make_app(admin_token_sha256=sha256_hex(weak))


def test_refuses_malformed_digest(make_app: AppFactory) -> None:
    with pytest.raises(AuthConfigError, match="64 hex"):
        make_app(admin_token_sha256=ADMIN_TOKEN)  # the token itself, not its digest


def test_auth_disabled_needs_no_token(make_app: AppFactory) -> None:
    app = make_app(auth_enabled=False, admin_token_sha256="", predict_token_sha256="")
    with TestClient(app) as client:
        assert client.post("/predict", json=ROW).status_code == 200
        assert client.post("/replace_ml_model", json={"tag": TAG_A}).status_code == 200


def test_token_file_from_a_mounted_secret(make_app: AppFactory, tmp_path: Path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text(
        "# scope(s)      sha256 of the token\n"
        f"admin,predict  {sha256_hex('from-file-admin')}\n"
        f"predict        {sha256_hex('from-file-predict')}\n"
    )
    app = make_app(admin_token_sha256="", predict_token_sha256="", token_file=secret)
    with TestClient(app) as client:
        headers = bearer("from-file-predict")
        assert client.post("/predict", json=ROW, headers=headers).status_code == 200
        swap = {"tag": TAG_A}
        assert client.post("/replace_ml_model", json=swap, headers=headers).status_code == 403
        admin = bearer("from-file-admin")
        assert client.post("/replace_ml_model", json=swap, headers=admin).status_code == 200
        assert client.post("/predict", json=ROW, headers=PREDICT).status_code == 401


def test_unreadable_token_file_refuses_start(make_app: AppFactory, tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError, match="cannot read token file"):
        make_app(token_file=tmp_path / "missing")


# --- OIDC ---------------------------------------------------------------------------------

ISSUER = "https://idp.example.test/"
AUDIENCE = "inference-service"


@dataclass
class Jwks:
    url: str
    key: rsa.RSAPrivateKey
    kid: str
    fetches: list[float] = field(default_factory=list)

    def token(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "iat": now}
        body["scope"] = "predict"
        body.update(claims)
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    """A real HTTP JWKS endpoint on 127.0.0.1 serving a fresh RSA public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="k1", use="sig", alg="RS256")
    document = json.dumps({"keys": [public]}).encode()
    fetches: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            fetches.append(time.time())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    yield Jwks(url, key, "k1", fetches)
    server.shutdown()
    server.server_close()


@pytest.fixture
def oidc_client(jwks: Jwks, registry_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = settings_for(
        str(registry_dir),
        tmp_path,
        oidc_jwks_url=jwks.url,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_leeway_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_oidc_good_token(oidc_client: TestClient, jwks: Jwks) -> None:
    response = oidc_client.post("/predict", json=ROW, headers=bearer(jwks.token()))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"aud": "some-other-service"}, "audience"),
        ({"iss": "https://evil.example.test/"}, "issuer"),
    ],
)
def test_oidc_rejects(
    oidc_client: TestClient, jwks: Jwks, claims: dict[str, Any], reason: str
) -> None:
    response = oidc_client.post("/predict", json=ROW, headers=bearer(jwks.token(**claims)))
    assert response.status_code == 401
    assert reason in response.json()["detail"]


def test_oidc_rejects_bad_signature(oidc_client: TestClient, jwks: Jwks) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = oidc_client.post("/predict", json=ROW, headers=bearer(jwks.token(key=forger)))
    assert response.status_code == 401
    assert "signature" in response.json()["detail"]


def test_oidc_rejects_symmetric_alg_confusion(oidc_client: TestClient, jwks: Jwks) -> None:
    # HS256 "signed" with the public key: the classic downgrade; only RS256 is accepted.
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "scope": "admin"},
        "k" * 32,
        algorithm="HS256",
        headers={"kid": jwks.kid},
    )
    assert oidc_client.post("/predict", json=ROW, headers=bearer(forged)).status_code == 401


def test_oidc_scopes_decide_access(oidc_client: TestClient, jwks: Jwks) -> None:
    swap = {"tag": TAG_A}
    predict_only = bearer(jwks.token(scope="predict"))
    assert oidc_client.post("/replace_ml_model", json=swap, headers=predict_only).status_code == 403
    admin = bearer(jwks.token(scope="predict admin"))
    assert oidc_client.post("/replace_ml_model", json=swap, headers=admin).status_code == 200


def test_oidc_keys_are_cached(oidc_client: TestClient, jwks: Jwks) -> None:
    for _ in range(5):
        oidc_client.post("/predict", json=ROW, headers=bearer(jwks.token()))
    assert len(jwks.fetches) == 1


def test_static_tokens_still_work_with_oidc(oidc_client: TestClient) -> None:
    assert oidc_client.post("/predict", json=ROW, headers=PREDICT).status_code == 200


def test_oidc_unreachable_jwks_is_503_not_500(make_app: AppFactory) -> None:
    from tests.support.ports import free_port

    app = make_app(
        oidc_jwks_url=f"http://127.0.0.1:{free_port()}/jwks",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
    )
    token = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    with TestClient(app) as client:
        assert client.post("/predict", json=ROW, headers=bearer(token)).status_code == 503


def test_oidc_refuses_symmetric_configuration(make_app: AppFactory) -> None:
    with pytest.raises(AuthConfigError, match="asymmetric"):
        make_app(
            oidc_jwks_url="http://127.0.0.1:1/jwks",
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
            oidc_algorithms="HS256",
        )


def test_admin_on_a_token_file_line_implies_predict(make_app: AppFactory, tmp_path: Path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text(f"admin {sha256_hex('file-admin-only')}\n")
    app = make_app(admin_token_sha256="", predict_token_sha256="", token_file=secret)
    with TestClient(app) as client:
        admin = bearer("file-admin-only")
        assert client.post("/predict", json=ROW, headers=admin).status_code == 200
        assert client.get("/get_experiment_metas", headers=admin).status_code == 200


def _mount_secret(directory: Path, text: str, version: int) -> None:
    """What the kubelet does to a Secret volume: a new timestamped directory, then the
    ``..data`` symlink swapped atomically; ``tokens`` links through ``..data``."""
    fresh = directory / f"..2026_01_01_00_00_0{version}"
    fresh.mkdir()
    (fresh / "tokens").write_text(text)
    link = directory / "..data_tmp"
    link.symlink_to(fresh.name)
    os.replace(link, directory / "..data")
    if not (directory / "tokens").is_symlink():
        (directory / "tokens").symlink_to("..data/tokens")


def test_token_file_is_reread_when_the_mounted_secret_changes(
    make_app: AppFactory, tmp_path: Path
) -> None:
    volume = tmp_path / "secret"
    volume.mkdir()
    _mount_secret(volume, f"admin {sha256_hex('first-admin')}\n", 1)
    app = make_app(admin_token_sha256="", predict_token_sha256="", token_file=volume / "tokens")
    wait = Authenticator.TOKEN_FILE_CHECK_SECONDS + 0.2
    with TestClient(app) as client:
        assert client.post("/predict", json=ROW, headers=bearer("first-admin")).status_code == 200
        _mount_secret(volume, f"admin {sha256_hex('second-admin')}\n", 2)  # rotated
        time.sleep(wait)
        assert client.post("/predict", json=ROW, headers=bearer("second-admin")).status_code == 200
        assert client.post("/predict", json=ROW, headers=bearer("first-admin")).status_code == 401
        _mount_secret(volume, "admin not-a-digest\n", 3)  # a broken update keeps what works
        time.sleep(wait)
        assert client.post("/predict", json=ROW, headers=bearer("second-admin")).status_code == 200


def test_auth_disabled_refuses_a_shared_s3_registry(tmp_path: Path) -> None:
    settings = settings_for("s3://bucket/registry", tmp_path, auth_enabled=False)
    with pytest.raises(AuthConfigError, match="s3://"):
        create_app(settings)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "inference.example.org"])
def test_auth_disabled_refuses_to_listen_beyond_loopback(
    host: str,
    registry_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MLOPS_AUTH_ENABLED", "false")
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(registry_dir))

    def would_serve(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"started serving on {host} with auth off")

    monkeypatch.setattr(uvicorn, "run", would_serve)  # if the guard fails, never listen
    with pytest.raises(SystemExit) as exit_:
        service_main(["--host", host, "--port", "1"])
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and host in err


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_auth_disabled_on_loopback_is_allowed(host: str) -> None:
    refuse_open_exposure(Settings(auth_enabled=False), host)
    with pytest.raises(AuthConfigError):
        refuse_open_exposure(Settings(auth_enabled=False), "0.0.0.0")


class FailingJwks:
    """A real JWKS endpoint that fails (500) or hangs, counting the fetches it gets."""

    def __init__(self, hang_seconds: float = 0.0) -> None:
        self.fetches = 0
        self.healthy: bytes | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.fetches += 1
                if outer.healthy is not None:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(outer.healthy)))
                    self.end_headers()
                    self.wfile.write(outer.healthy)
                    return
                time.sleep(hang_seconds)
                self.send_error(500)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/secret-path/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _forged(kid: str = "k1") -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "scope": "admin"}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.mark.parametrize("hang", [0.0, 3.0])
def test_a_failing_jwks_is_backed_off_and_never_named(make_app: AppFactory, hang: float) -> None:
    idp = FailingJwks(hang_seconds=hang)
    forged = _forged()
    app = make_app(oidc_jwks_url=idp.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    answers: list[tuple[int, str, float, str | None]] = []

    def call() -> None:
        started = time.monotonic()
        response = client.post("/predict", json=ROW, headers=bearer(forged))
        answers.append(
            (
                response.status_code,
                response.text,
                time.monotonic() - started,
                response.headers.get("retry-after"),
            )
        )

    try:
        with TestClient(app) as client:
            threads = [threading.Thread(target=call) for _ in range(30)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            slowest = max(a[2] for a in answers)
            print(
                f"30 forged tokens, JWKS {'hanging' if hang else 'failing'}: {idp.fetches}"
                f" fetch(es), slowest answer {slowest:.2f}s"
            )
            assert [a[0] for a in answers] == [503] * 30
            assert all("secret-path" not in a[1] and "127.0.0.1" not in a[1] for a in answers)
            assert all(a[3] is not None and int(a[3]) >= 1 for a in answers)
            assert idp.fetches <= 2, idp.fetches
            if hang:  # nobody waits for the fetch's whole timeout (the hang is longer)
                assert slowest < hang, slowest
    finally:
        idp.close()


def test_jwks_recovers_after_the_back_off(make_app: AppFactory) -> None:
    idp = FailingJwks()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="k1", use="sig", alg="RS256")
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, "scope": "predict"}
    good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    app = make_app(oidc_jwks_url=idp.url, oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    try:
        with TestClient(app) as client:
            assert client.post("/predict", json=ROW, headers=bearer(good)).status_code == 503
            idp.healthy = json.dumps({"keys": [public]}).encode()
            time.sleep(OidcVerifier.FIRST_BACKOFF_SECONDS + 0.2)
            assert client.post("/predict", json=ROW, headers=bearer(good)).status_code == 200
            assert idp.fetches == 2
    finally:
        idp.close()


def test_uvicorn_trusts_forwarded_headers_only_from_the_configured_proxies(
    registry_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(registry_dir))
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN_SHA256", sha256_hex(ADMIN_TOKEN))
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    service_main(["--host", "127.0.0.1", "--port", "1"])
    assert served["forwarded_allow_ips"] == "127.0.0.1"
    monkeypatch.setenv("MLOPS_FORWARDED_ALLOW_IPS", "10.0.0.7,10.0.0.8")
    service_main(["--host", "127.0.0.1", "--port", "1"])
    assert served["forwarded_allow_ips"] == "10.0.0.7,10.0.0.8"
