"""Bearer tokens with scopes, and optional OIDC JWTs.

Static tokens are configured only as sha256 digests (environment or a mounted secret file),
so the service never holds a usable secret. A presented token is hashed once and compared with
every configured digest in constant time. Dependencies here are ``async``: a plain ``def``
dependency would hop to the thread pool on every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi import HTTPException

from machinery.errors import UserError
from service.settings import Settings

PREDICT = "predict"
ADMIN = "admin"
SCOPES = frozenset({PREDICT, ADMIN})

# Tokens nobody may deploy with: a leaked example is not a secret.
WEAK_TOKENS = ("", "admin", "changeme", "change-me", "secret", "token", "password", "default")
_WEAK_DIGESTS = frozenset(hashlib.sha256(t.encode()).hexdigest() for t in WEAK_TOKENS)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Only asymmetric algorithms: a symmetric one would let anyone holding the public key sign.
_ASYMMETRIC = re.compile(r"^(RS|PS|ES)(256|384|512)$|^EdDSA$")


class AuthConfigError(UserError):
    """The service must not start with this access configuration."""


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]


ANONYMOUS = Principal("anonymous", SCOPES)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, detail=message, headers={"WWW-Authenticate": "Bearer"})


class OidcVerifier:
    """Validates JWTs (signature, issuer, audience, expiry) against a JWKS cached with a TTL."""

    # After an unknown ``kid`` forces a refresh, wait this long before the next forced one.
    MIN_REFRESH_SECONDS = 10.0

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        algorithms: list[str],
        ttl_seconds: float,
        leeway_seconds: float,
        scope_claim: str,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self.ttl_seconds = ttl_seconds
        self.leeway_seconds = leeway_seconds
        self.scope_claim = scope_claim
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -1e18
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _unauthorized("malformed bearer token") from None
        kid = str(header.get("kid", ""))
        key = await self._key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token expired") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized("token audience is not this service") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized("token issuer is not trusted") from None
        except jwt.InvalidSignatureError:
            raise _unauthorized("token signature is invalid") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        return Principal(f"oidc:{claims.get('sub', '?')}", _scopes(claims.get(self.scope_claim)))

    async def _key(self, kid: str) -> jwt.PyJWK:
        seen = self._fetched_at
        age = time.monotonic() - seen
        key = self._keys.get(kid)
        if key is not None and age <= self.ttl_seconds:
            return key
        # Refresh when the cache expired, or for an unknown kid (key rotation), but an unknown
        # kid may force a fetch at most every MIN_REFRESH_SECONDS: junk tokens cannot hammer
        # the identity provider.
        if age > self.ttl_seconds or age > self.MIN_REFRESH_SECONDS:
            async with self._lock:
                if self._fetched_at == seen:  # nobody refreshed while this request waited
                    await self._refresh()
        key = self._keys.get(kid)
        if key is None:
            raise _unauthorized("token signed by an unknown key")
        return key

    async def _refresh(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
                document = response.json()
            keys: dict[str, jwt.PyJWK] = {}
            for entry in document.get("keys", []):
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # a key type we cannot use; others may still be fine
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            if self._keys:
                # Keep the old keys (an IdP hiccup must not lock everyone out); retry soon.
                self._fetched_at = time.monotonic() - self.ttl_seconds + self.MIN_REFRESH_SECONDS
                return
            raise HTTPException(503, detail=f"identity provider keys unavailable: {exc}") from None
        self._keys = keys
        self._fetched_at = time.monotonic()


def _scopes(raw: object) -> frozenset[str]:
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(s) for s in raw)
    return frozenset()


class Authenticator:
    def __init__(
        self, enabled: bool, tokens: Iterable[tuple[bytes, Principal]], oidc: OidcVerifier | None
    ) -> None:
        self.enabled = enabled
        self._tokens = tuple(tokens)
        self.oidc = oidc

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        if not settings.auth_enabled:
            return cls(False, (), None)
        entries = list(_entries_from_env(settings))
        if settings.token_file is not None:
            entries.extend(_entries_from_file(settings.token_file))
        tokens: list[tuple[bytes, Principal]] = []
        for scopes, digest in entries:
            if not _HEX64.match(digest):
                raise AuthConfigError(
                    f"token digest {digest[:16]!r}… is not 64 hex characters (sha256 of the token)"
                )
            if digest in _WEAK_DIGESTS:
                raise AuthConfigError(
                    "a configured token is empty or a well-known default; generate one with"
                    " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
            unknown = scopes - SCOPES
            if unknown:
                raise AuthConfigError(f"unknown token scopes {sorted(unknown)}")
            tokens.append((bytes.fromhex(digest), Principal(f"token:{digest[:8]}", scopes)))
        oidc = _oidc_from_settings(settings)
        if not any(ADMIN in p.scopes for _, p in tokens) and oidc is None:
            raise AuthConfigError(
                "auth is on but no admin token is configured: set MLOPS_ADMIN_TOKEN_SHA256"
                " (or MLOPS_TOKEN_FILE, or OIDC), or MLOPS_AUTH_ENABLED=false for local use"
            )
        return cls(True, tokens, oidc)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        if not authorization:
            raise _unauthorized("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("expected 'Authorization: Bearer <token>'")
        if self.oidc is not None and token.count(".") == 2:
            return await self.oidc.verify(token)
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        # No early exit: the time taken does not depend on which digest (if any) matched.
        for candidate, principal in self._tokens:
            if hmac.compare_digest(digest, candidate):
                found = principal
        if found is None:
            raise _unauthorized("invalid bearer token")
        return found

    async def authorize(self, authorization: str | None, scope: str) -> Principal:
        """401 without a valid token, 403 when the token lacks ``scope``."""
        principal = await self.authenticate(authorization)
        if scope not in principal.scopes:
            raise HTTPException(
                403,
                detail=f"token lacks scope {scope!r}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
            )
        return principal


def _split(value: str) -> list[str]:
    return [part.strip().lower() for part in value.split(",") if part.strip()]


def _entries_from_env(settings: Settings) -> Iterable[tuple[frozenset[str], str]]:
    for digest in _split(settings.predict_token_sha256):
        yield frozenset({PREDICT}), digest
    for digest in _split(settings.admin_token_sha256):
        yield frozenset({ADMIN, PREDICT}), digest


def _entries_from_file(path: Path) -> Iterable[tuple[frozenset[str], str]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise AuthConfigError(f"{path}: cannot read token file ({exc.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise AuthConfigError(f"{path}:{number}: expected '<scope>[,<scope>] <sha256 hex>'")
        yield frozenset(_split(fields[0])), fields[1].lower()


def _oidc_from_settings(settings: Settings) -> OidcVerifier | None:
    if not settings.oidc_jwks_url:
        return None
    if not settings.oidc_issuer or not settings.oidc_audience:
        raise AuthConfigError("OIDC needs MLOPS_OIDC_ISSUER and MLOPS_OIDC_AUDIENCE as well")
    algorithms = [a.strip() for a in settings.oidc_algorithms.split(",") if a.strip()]
    weak = [a for a in algorithms if not _ASYMMETRIC.match(a)]
    if weak or not algorithms:
        raise AuthConfigError(f"OIDC algorithms must be asymmetric (RS/PS/ES/EdDSA), got {weak}")
    return OidcVerifier(
        settings.oidc_jwks_url,
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        algorithms=algorithms,
        ttl_seconds=settings.oidc_jwks_ttl_seconds,
        leeway_seconds=settings.oidc_leeway_seconds,
        scope_claim=settings.oidc_scope_claim,
    )
