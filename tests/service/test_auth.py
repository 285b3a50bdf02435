"""Access: static bearer tokens (sha256 digests, scopes) and OIDC JWTs against a real JWKS."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm

from service.auth import AuthConfigError
from service.main import create_app
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
