"""The local OpenID Connect provider (scripts/oidc_provider.mjs), alone, without a portal stack:
discovery, and the authorization-code + PKCE round trip of each of its accounts and clients, done
here in Python as the portal's relying party would (the signature checked with `cryptography`)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import free_port
from oidc_provider import (CLIENT_SECRET, MFA_EMAIL, USER_EMAIL, USER_PASSWORD, sign_in_at_provider,
                           start_provider, stop_provider)

REDIRECT_URI = "http://localhost:{port}/signin/external/example/callback"


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture(scope="module")
def provider():
    port = free_port(avoid=(9000, 4566, 9400))
    proc = start_provider(port)
    try:
        issuer = f"http://localhost:{port}"
        config = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
        config["keys"] = requests.get(config["jwks_uri"], timeout=5).json()["keys"]
        yield config
    finally:
        stop_provider(proc)


def round_trip(provider, client_id: str, login: str = USER_EMAIL, consent: bool = True):
    """Authorize (state, nonce, PKCE S256), sign in at the provider, redeem the code. Returns
    (the callback's query, the token response, the ID token's header, payload and nonce)."""
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = REDIRECT_URI.format(port=free_port())  # any local portal stack's port
    authorize = provider["authorization_endpoint"] + "?" + urlencode({
        "client_id": client_id, "response_type": "code", "scope": "openid email profile",
        "redirect_uri": redirect_uri, "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    location = sign_in_at_provider(authorize, login, USER_PASSWORD, consent=consent)
    assert location.split("?")[0] == redirect_uri
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["state"] == state and query["iss"] == provider["issuer"]
    if not consent:
        return query, None, None, None, nonce
    tokens = requests.post(provider["token_endpoint"], auth=(client_id, CLIENT_SECRET), timeout=5, data={
        "grant_type": "authorization_code", "code": query["code"], "redirect_uri": redirect_uri,
        "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    header, payload, _ = tokens.json()["id_token"].split(".")
    return query, tokens.json(), json.loads(b64decode(header)), json.loads(b64decode(payload)), nonce


def signature_verifies(provider, id_token: str) -> bool:
    """RS256 against the published JWKS (the key of the token's kid)."""
    header, payload, signature = id_token.split(".")
    kid = json.loads(b64decode(header))["kid"]
    jwk = next(k for k in provider["keys"] if k["kid"] == kid)
    key = rsa.RSAPublicNumbers(int.from_bytes(b64decode(jwk["e"]), "big"),
                               int.from_bytes(b64decode(jwk["n"]), "big")).public_key()
    try:
        key.verify(b64decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def test_discovery(provider):
    assert provider["issuer"].startswith("http://localhost:")
    assert provider["jwks_uri"] == provider["issuer"] + "/jwks"
    assert "S256" in provider["code_challenge_methods_supported"]
    assert [k["kty"] for k in provider["keys"]] == ["RSA"] and "d" not in provider["keys"][0]


def test_portal_client_signs_in_the_user(provider):
    _, tokens, header, claims, nonce = round_trip(provider, "portal")
    assert header["alg"] == "RS256" and header["kid"] == provider["keys"][0]["kid"]
    assert signature_verifies(provider, tokens["id_token"])
    assert claims["iss"] == provider["issuer"] and claims["aud"] == "portal"
    assert claims["sub"] == "oidc-user-1" and claims["nonce"] == nonce
    assert claims["email"] == USER_EMAIL and claims["email_verified"] is True
    assert (claims["given_name"], claims["family_name"], claims["name"]) == ("Olive", "Ida", "Olive Ida")
    assert claims["amr"] == ["pwd"] and claims["exp"] > time.time()


def test_mfa_account_carries_amr_mfa(provider):
    _, tokens, _, claims, _ = round_trip(provider, "portal", login=MFA_EMAIL)
    assert signature_verifies(provider, tokens["id_token"])
    assert claims["email"] == MFA_EMAIL and "mfa" in claims["amr"]


def test_any_other_login_is_its_own_verified_account(provider):
    _, _, _, claims, _ = round_trip(provider, "portal", login="Someone.New@Example.com")
    assert claims["email"] == "someone.new@example.com" and claims["email_verified"] is True
    assert claims["sub"].startswith("oidc-") and claims["sub"] != "oidc-user-1"
    _, _, _, unverified, _ = round_trip(provider, "portal", login="oidc-unverified@example.com")
    assert unverified["email_verified"] is False


def test_wrong_audience(provider):
    _, tokens, _, claims, _ = round_trip(provider, "portal-wrong-aud")
    assert claims["aud"] == "someone-else" and signature_verifies(provider, tokens["id_token"])


def test_expired(provider):
    _, tokens, _, claims, _ = round_trip(provider, "portal-expired")
    assert claims["exp"] < time.time() - 3000 and claims["iat"] < claims["exp"]
    assert claims["aud"] == "portal-expired" and signature_verifies(provider, tokens["id_token"])


def test_bad_signature(provider):
    _, tokens, header, claims, _ = round_trip(provider, "portal-bad-sig")
    assert header["kid"] == provider["keys"][0]["kid"] and claims["aud"] == "portal-bad-sig"
    assert not signature_verifies(provider, tokens["id_token"])


def test_refused_consent(provider):
    query, *_ = round_trip(provider, "portal", consent=False)
    assert query["error"] == "access_denied" and "code" not in query


def test_foreign_redirect_uri_is_refused(provider):
    authorize = provider["authorization_endpoint"] + "?" + urlencode({
        "client_id": "portal", "response_type": "code", "scope": "openid",
        "redirect_uri": "http://evil.example/signin/external/example/callback", "state": "s",
        "code_challenge": "x" * 43, "code_challenge_method": "S256"})
    response = requests.get(authorize, allow_redirects=False, timeout=5)
    assert response.status_code == 400 and "redirect_uri" in response.text
