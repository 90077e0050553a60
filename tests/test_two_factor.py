"""Two-factor authentication and "remember me" end to end through the contract (issue 12): TOTP
set-up and sign-in with codes computed here from the secret (RFC 6238 with the standard library's
HMAC), recovery codes, emailed codes, notices, disabling, and the required-roles policy."""

from __future__ import annotations

import base64
import re


from conftest import stack_fixture
from totp import totp  # noqa: F401  (scripts/totp.py; the other tests import it from here)
from support import (
    ADMIN_PASSWORD, BROWSER_ACCEPT, await_emails, describe, error_body, find_cookie, session_token, with_session,
)

PENDING_COOKIE = "portal_pending"


def test_the_rfc_6238_reference_code():
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082, whose last six digits are 6-digit TOTP's.
    secret = base64.b32encode(b"12345678901234567890").decode().rstrip("=")
    assert totp(secret, at=59) == "287082"


def set_up_totp(portal, session: str, password: str) -> tuple[str, list[str], str]:
    """Sets up TOTP; returns (secret, recovery codes, the browser's new session token)."""
    begun = portal.post_json("/profile/two-factor/totp", {"current_password": password},
                             headers=with_session(session))
    assert begun.status_code == 200, describe(begun)
    body = begun.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/"), body
    assert f"secret={body['secret']}" in body["otpauth_uri"], body
    confirmed = portal.post_json("/profile/two-factor/totp/confirm", {"code": totp(body["secret"])},
                                 headers=with_session(session))
    assert confirmed.status_code == 200, describe(confirmed)
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    return body["secret"], codes, session_token(confirmed)


def pending_sign_in(portal, login: str, password: str, remember: bool = False) -> tuple[str, list]:
    body = {"login": login, "password": password}
    if remember:
        body["remember_me"] = True
    resp = portal.post_json("/signin", body)
    assert resp.status_code == 200, describe(resp)
    assert resp.json()["status"] == "second_factor_required", resp.json()
    assert find_cookie(resp, "portal_session") is None, "no session before the second factor"
    pending = find_cookie(resp, PENDING_COOKIE)
    assert pending and pending.value and pending.has("httponly"), pending
    return pending.value, resp.json()["methods"]


def second_step(portal, pending: str, code: str):
    return portal.post_json("/signin/second-factor", {"code": code},
                            headers={"Cookie": f"{PENDING_COOKIE}={pending}"})


def registered(portal) -> tuple[dict, str]:
    body, resp = portal.register()
    assert resp.status_code == 201, describe(resp)
    return body, session_token(resp)


def test_totp_set_up_then_sign_in_with_password_and_code(portal, new_portal):
    account, session = registered(portal)
    wrong = portal.post_json("/profile/two-factor/totp", {"current_password": "not-it-at-all"},
                             headers=with_session(session))
    assert wrong.status_code == 400 and "current_password" in error_body(wrong)["fields"]
    secret, _, current = set_up_totp(portal, session, account["password"])
    status = portal.get_json("/profile/two-factor", headers=with_session(current))
    assert status.json() == {"totp": True, "email": False, "recovery_codes_left": 10}
    assert portal.get_json("/profile", headers=with_session(session)).status_code == 401, \
        "the change ended the other sessions"

    client = new_portal()
    pending, methods = pending_sign_in(client, account["email"], account["password"])
    assert methods == ["totp", "recovery_code"]
    refused = second_step(client, pending, "000000" if totp(secret, 1) != "000000" else "111111")
    assert refused.status_code == 401 and error_body(refused)["error"] == "invalid_credentials"
    # The confirming code's step is used; the next step's code (one step of drift) is not.
    done = second_step(client, pending, totp(secret, 1))
    assert done.status_code == 200, describe(done)
    assert done.json()["email"] == account["email"].lower() or done.json()["email"] == account["email"]
    cookie = find_cookie(done, "portal_session")
    assert cookie and not cookie.has("max-age") and not cookie.has("expires"), cookie.raw
    me = client.get_json("/profile", headers=with_session(cookie.value))
    assert me.status_code == 200, describe(me)
    again = second_step(client, pending, totp(secret, 1))
    assert again.status_code == 401, "the pending sign-in ended with its success"


def test_five_wrong_codes_end_the_pending_sign_in(portal, new_portal):
    account, session = registered(portal)
    secret, _, _ = set_up_totp(portal, session, account["password"])
    client = new_portal()
    pending, _ = pending_sign_in(client, account["email"], account["password"])
    for _ in range(5):
        assert second_step(client, pending, "999999" if totp(secret) != "999999" else "888888").status_code == 401
    assert second_step(client, pending, totp(secret, 1)).status_code == 401


def test_recovery_codes_are_single_use_and_a_new_set_voids_the_old(portal, new_portal):
    account, session = registered(portal)
    _, codes, current = set_up_totp(portal, session, account["password"])
    client = new_portal()
    pending, _ = pending_sign_in(client, account["email"], account["password"])
    assert second_step(client, pending, codes[0]).status_code == 200
    pending, _ = pending_sign_in(client, account["email"], account["password"])
    assert second_step(client, pending, codes[0]).status_code == 401, "used twice"

    alone = portal.post_json("/profile/two-factor/recovery-codes",
                             {"current_password": account["password"]}, headers=with_session(current))
    assert alone.status_code == 400 and "second_factor_code" in error_body(alone)["fields"], \
        "a two-factor change needs a current second factor too"
    renewed = portal.post_json("/profile/two-factor/recovery-codes",
                               {"current_password": account["password"], "second_factor_code": codes[2]},
                               headers=with_session(current))
    assert renewed.status_code == 200, describe(renewed)
    new_codes = renewed.json()["recovery_codes"]
    assert len(new_codes) == 10
    pending, _ = pending_sign_in(client, account["email"], account["password"])
    assert second_step(client, pending, codes[1]).status_code == 401, "an old code after a new set"
    assert second_step(client, pending, new_codes[0]).status_code == 200


def test_an_emailed_code_signs_in_once_and_changes_are_notified(stack, portal, new_portal):
    account, session = registered(portal)
    on = portal.post_json("/profile/two-factor/email",
                          {"current_password": account["password"], "enabled": True},
                          headers=with_session(session))
    assert on.status_code == 200, describe(on)
    current = session_token(on)
    await_emails(stack, account["email"], "Your two-factor authentication changed")
    client = new_portal()
    pending, methods = pending_sign_in(client, account["email"], account["password"])
    assert "email" in methods
    asked = client.post_json("/signin/second-factor/email", {}, headers={"Cookie": f"{PENDING_COOKIE}={pending}"})
    assert asked.status_code == 202, describe(asked)
    email = await_emails(stack, account["email"], "Your sign-in code")[-1]
    code = re.search(r"^\s+(\d{6})\s*$", email["body"], re.MULTILINE).group(1)
    assert second_step(client, pending, code).status_code == 200
    pending, _ = pending_sign_in(client, account["email"], account["password"])
    assert second_step(client, pending, code).status_code == 401, "an emailed code works once"

    wrong = portal.post_json("/profile/two-factor/disable", {"current_password": "nope-nope-nope"},
                             headers=with_session(current))
    assert wrong.status_code == 400
    # Re-authentication with an emailed code: a signed-in person asks for one.
    asked = portal.post_json("/signin/second-factor/email", {}, headers=with_session(current))
    assert asked.status_code == 202, describe(asked)
    email = await_emails(stack, account["email"], "Your sign-in code", count=2)[-1]
    fresh = re.search(r"^\s+(\d{6})\s*$", email["body"], re.MULTILINE).group(1)
    off = portal.post_json("/profile/two-factor/disable",
                           {"current_password": account["password"], "second_factor_code": fresh},
                           headers=with_session(current))
    assert off.status_code == 204, describe(off)
    # (Its notice is within the recipient's hourly allowance of 3 only in a fresh hour: the
    # confirmation link, the first notice and the code used it up, so it is not awaited here.)
    plain = client.signin(account["email"], account["password"])
    assert plain.status_code == 200 and find_cookie(plain, "portal_session") is not None


def test_remember_me_makes_a_persistent_cookie(portal, new_portal):
    account, _ = registered(portal)
    plain = new_portal().signin(account["email"], account["password"])
    cookie = find_cookie(plain, "portal_session")
    assert cookie and not cookie.has("max-age") and not cookie.has("expires"), cookie.raw
    remembered = new_portal().post_json(
        "/signin", {"login": account["email"], "password": account["password"], "remember_me": True})
    cookie = find_cookie(remembered, "portal_session")
    assert cookie and cookie.attrs.get("max-age") == str(30 * 86400), cookie.raw


staff_two_factor_stack = stack_fixture(
    "staff_two_factor_stack", "two-factor-staff",
    {"PORTAL_TWO_FACTOR_REQUIRED_ROLES": "Administrators",
     "PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": "100000"},
    doc="A stack whose Administrators must have a second factor.")


def test_administrators_must_set_up_a_second_factor_first(staff_two_factor_stack):
    from support import Portal

    portal = Portal(staff_two_factor_stack.portal_url)
    resp = portal.signin(staff_two_factor_stack.admin_email, ADMIN_PASSWORD)
    assert resp.status_code == 200, describe(resp)
    assert resp.json()["two_factor_setup_required"] is True
    limited = session_token(resp)
    blocked = portal.get_json("/admin/contacts", headers=with_session(limited))
    assert blocked.status_code == 403 and error_body(blocked)["error"] == "forbidden"
    page = portal.get("/", headers={"Accept": BROWSER_ACCEPT, "Cookie": f"portal_session={limited}"})
    assert page.status_code == 303 and page.headers["Location"] == "/profile/two-factor"
    _, _, full = set_up_totp(portal, limited, ADMIN_PASSWORD)
    assert portal.get_json("/admin/contacts", headers=with_session(full)).status_code == 200
