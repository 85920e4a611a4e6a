"""Single sign-on with OpenID Connect: authorization code flow with PKCE and a nonce.

Authlib builds the authorization and token requests; joserfc (Authlib's JOSE library)
verifies the ID token's signature against the provider's JWKS and checks its issuer,
audience, expiry and nonce. The state, nonce and PKCE verifier travel in a short-lived
signed cookie, so any worker can finish a login another one started.

Errors: the provider unreachable or answering nonsense -> BadGateway; a callback that does
not match its login (state), or an ID token that fails verification -> Unauthorized.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from openmaas.domain.errors import BadGateway, NotFound, Unauthorized

logger = logging.getLogger("openmaas.access")


STATE_MAX_AGE = 600
_DISCOVERY_TTL = 300.0


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    subject: str  # "<issuer>|<sub>", unique across providers
    email: str | None
    email_verified: bool
    username: str | None


class OidcClient:
    def __init__(
        self, *, issuer: str | None, client_id: str | None, client_secret: str | None, scopes: str
    ) -> None:
        self.issuer = issuer.rstrip("/") if issuer else None
        self.client_id = client_id
        self.client_secret = client_secret or ""
        self.scopes = scopes
        self._discovery: tuple[float, dict[str, Any]] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.get(url)
                response.raise_for_status()
                data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _provider_failed(exc) from exc
        if not isinstance(data, dict):
            raise BadGateway("the identity provider sent no JSON object", code="sso_provider")
        return data

    async def discovery(self) -> dict[str, Any]:
        if not self.enabled:
            raise NotFound("single sign-on is not configured", code="sso_disabled")
        if self._discovery is None or self._discovery[0] < time.monotonic():
            document = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            self._discovery = (time.monotonic() + _DISCOVERY_TTL, document)
        return self._discovery[1]

    async def start(self, redirect_uri: str) -> tuple[str, dict[str, str]]:
        """The provider's login URL and the state to keep (signed) until the callback."""
        document = await self.discovery()
        state, nonce, verifier = generate_token(24), generate_token(24), generate_token(48)
        url = prepare_grant_uri(
            document["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=self.scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return url, {"state": state, "nonce": nonce, "verifier": verifier}

    async def finish(
        self, *, code: str, state: str, saved: dict[str, Any] | None, redirect_uri: str
    ) -> OidcIdentity:
        if not saved or saved.get("state") != state:
            raise Unauthorized("the sign-on response does not match a login", code="sso_state")
        document = await self.discovery()
        body = prepare_token_request(
            "authorization_code",
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=saved["verifier"],
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        if "client_secret_basic" in methods:
            pair = f"{quote(self.client_id or '', safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            body += f"&client_id={quote(self.client_id or '')}"
            body += f"&client_secret={quote(self.client_secret)}"
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(
                    document["token_endpoint"], content=body, headers=headers
                )
            tokens = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _provider_failed(exc) from exc
        if response.status_code != 200 or not isinstance(tokens, dict):
            raise Unauthorized("the identity provider refused the sign-on", code="sso_refused")
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise Unauthorized("the identity provider sent no ID token", code="sso_refused")
        claims = await self._verify(id_token, document, saved["nonce"])
        return OidcIdentity(
            subject=f"{self.issuer}|{claims['sub']}",
            email=claims.get("email"),
            email_verified=bool(claims.get("email_verified", False)),
            username=claims.get("preferred_username"),
        )

    async def _verify(self, id_token: str, document: dict[str, Any], nonce: str) -> dict[str, Any]:
        jwks = await self._get_json(document["jwks_uri"])
        try:
            token = jwt.decode(id_token, KeySet.import_key_set(jwks))  # type: ignore[arg-type]
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": str(document.get("issuer", self.issuer))},
                aud={"essential": True, "value": str(self.client_id)},
                sub={"essential": True},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            logger.warning("single sign-on: the ID token is not valid: %s", exc)
            raise Unauthorized("the ID token is not valid", code="sso_invalid_token") from exc
        return dict(token.claims)


def _provider_failed(exc: Exception) -> BadGateway:
    # Where the provider is and what the library said go to the log, not to the browser.
    logger.warning("single sign-on: the identity provider failed: %r", exc)
    return BadGateway("the identity provider failed; try again later", code="sso_provider")
