"""Passkey routes end to end through the contract (JSON), on the local stack. A full ceremony needs
an authenticator: the Chromium journey (test_browser_passkeys.py) drives one, and the handler tests
(shared/tests/passkeys.rs) a software one; here every answer a program can get without one."""

from __future__ import annotations

import base64
import re

from support import describe, error_body, session_token, unique_email, with_session

BOGUS_ASSERTION = {
    "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
    "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA",
                 "userHandle": "AAAA"},
}
BOGUS_ATTESTATION = {
    "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
    "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"},
}


def b64url_len(text: str) -> int:
    return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def signed_up(portal) -> tuple[str, str, str]:
    body, resp = portal.register(email=unique_email("passkeys"))
    assert resp.status_code == 201, describe(resp)
    return session_token(resp), resp.json()["contact_id"], body["password"]


def test_registration_options_ask_for_a_discoverable_verified_passkey_of_this_site(portal, base_url):
    session, contact_id, password = signed_up(portal)
    listed = portal.get_json("/profile/passkeys", headers=with_session(session))
    assert listed.status_code == 200, describe(listed)
    assert listed.json() == {"passkeys": []}

    # A passkey signs in without the password: adding one asks for it (a session alone is not enough).
    resp = portal.post_json("/profile/passkeys/register/start", {}, headers=with_session(session))
    assert resp.status_code == 400 and "current_password" in error_body(resp)["fields"], describe(resp)
    resp = portal.post_json("/profile/passkeys/register/start", {"current_password": "not-the-password-1"},
                            headers=with_session(session))
    assert resp.status_code == 400 and "current_password" in error_body(resp)["fields"], describe(resp)
    resp = portal.post_json("/profile/passkeys/register/start", {"current_password": password},
                            headers=with_session(session))
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert isinstance(body["ceremony"], str) and len(body["ceremony"]) >= 43
    options = body["publicKey"]
    assert options["rp"]["id"] == "localhost"
    assert b64url_len(options["challenge"]) >= 16
    assert options["user"]["id"], "a user handle"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["excludeCredentials"] == []

    # A finish whose credential is no WebAuthn response: a field error, and the state is used up.
    finish = {"ceremony": body["ceremony"], "name": "Laptop", "credential": BOGUS_ATTESTATION}
    resp = portal.post_json("/profile/passkeys/register/finish", finish, headers=with_session(session))
    assert resp.status_code == 400, describe(resp)
    assert "credential" in error_body(resp)["fields"]
    resp = portal.post_json("/profile/passkeys/register/finish", finish, headers=with_session(session))
    assert resp.status_code == 400, describe(resp)
    assert "expired or was already used" in error_body(resp)["fields"]["ceremony"]


def test_passkey_routes_of_the_profile_need_a_session_and_a_password(portal):
    for path in ("/profile/passkeys/register/start", "/profile/passkeys/register/finish"):
        resp = portal.post_json(path, {})
        assert resp.status_code == 401, describe(resp)
        assert error_body(resp)["error"] == "unauthenticated"
    assert portal.get_json("/profile/passkeys").status_code == 401

    session, _, password = signed_up(portal)
    resp = portal.post_json("/profile/passkeys/0123/delete", {}, headers=with_session(session))
    assert resp.status_code == 400, describe(resp)
    assert "current_password" in error_body(resp)["fields"]
    resp = portal.post_json("/profile/passkeys/0123/delete", {"current_password": password},
                            headers=with_session(session))
    assert resp.status_code == 404, describe(resp)
    assert error_body(resp)["error"] == "not_found"


def test_passkey_sign_in_options_name_no_credential_and_a_bad_answer_is_invalid_credentials(portal):
    resp = portal.post_json("/signin/passkey/start", {})
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    options = body["publicKey"]
    assert options["allowCredentials"] == [], "discoverable credentials"
    assert options["userVerification"] == "required"
    assert options["rpId"] == "localhost"
    assert "mediation" not in body

    finish = {"ceremony": body["ceremony"], "credential": BOGUS_ASSERTION}
    resp = portal.post_json("/signin/passkey/finish", finish)
    assert resp.status_code == 401, describe(resp)
    assert error_body(resp)["error"] == "invalid_credentials"
    assert "portal_session" not in resp.headers.get("Set-Cookie", "")

    resp = portal.post_json("/signin/passkey/finish", {"ceremony": body["ceremony"]})
    assert resp.status_code == 400, describe(resp)
    assert "credential" in error_body(resp)["fields"]


def test_the_passkey_script_is_served_and_pages_allow_only_the_portals_scripts(portal):
    resp = portal.get("/signin/passkey.js")
    assert resp.status_code == 200, describe(resp)
    assert resp.headers["Content-Type"].startswith("text/javascript")
    assert "navigator.credentials.create" in resp.text
    page = portal.get_page("/signin")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy, policy
    # The page links the script's versioned copy (its name holds a hash of its content), which
    # serves the same script, cacheable for a year, through the HTTP API.
    versioned = re.search(r'<script src="(/assets/passkey\.[0-9a-f]{16}\.js)" defer>', page.text)
    assert versioned, page.text
    copy = portal.get(versioned.group(1))
    assert copy.status_code == 200 and copy.text == resp.text, describe(copy)
    assert copy.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["Cache-Control"] == "no-cache"


def test_a_foreign_origin_cannot_start_a_ceremony(portal):
    resp = portal.post_json("/signin/passkey/start", {}, headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403, describe(resp)
