"""One door to a session, end to end (issue 17): a repeated registration gets what a sign-in with
its password gets (the second factor, the lockout), a change that could take an account over needs
re-authentication, and a security notice arrives even when every request allowance of the address
is spent."""

from __future__ import annotations

from support import describe, error_body, find_cookie, registration, session_token, with_session
from test_two_factor import set_up_totp, totp


def test_a_repeated_registration_asks_for_the_second_factor_as_sign_in_does(portal):
    body, resp = portal.register()
    assert resp.status_code == 201, describe(resp)
    session = session_token(resp)
    on = portal.post_json("/profile/two-factor/email", {"current_password": body["password"], "enabled": True},
                          headers=with_session(session))
    assert on.status_code == 200, describe(on)

    again = portal.post_json("/register", body)
    assert again.status_code == 200, describe(again)
    assert again.json()["status"] == "second_factor_required"
    assert find_cookie(again, "portal_session") is None, "the password alone signs nothing in"
    signin = portal.signin(body["email"], body["password"])
    assert signin.json() == again.json(), "the same answer as a sign-in"


def test_wrong_passwords_through_registration_count_towards_the_lockout(portal):
    body, resp = portal.register()
    assert resp.status_code == 201, describe(resp)
    for _ in range(5):
        wrong = portal.post_json("/register", dict(body, password="Wrong-Guess-Walrus-Orbit-1"))
        assert wrong.status_code == 409 and error_body(wrong)["error"] == "email_taken", describe(wrong)
    right = portal.post_json("/register", body)
    assert right.status_code == 409, "locked: the right password through registration too"
    locked = portal.signin(body["email"], body["password"])
    assert locked.status_code == 401 and error_body(locked)["error"] == "invalid_credentials"


def test_adding_a_passkey_or_changing_a_factor_needs_the_password_and_the_second_factor(portal):
    body, resp = portal.register()
    session = session_token(resp)
    secret, codes, session = set_up_totp(portal, session, body["password"])

    start = "/profile/passkeys/register/start"
    borrowed = portal.post_json(start, {}, headers=with_session(session))
    assert borrowed.status_code == 400, describe(borrowed)
    assert {"current_password", "second_factor_code"} <= set(error_body(borrowed)["fields"])
    alone = portal.post_json(start, {"current_password": body["password"]}, headers=with_session(session))
    assert alone.status_code == 400 and "second_factor_code" in error_body(alone)["fields"], describe(alone)
    both = portal.post_json(start, {"current_password": body["password"], "second_factor_code": totp(secret, 1)},
                            headers=with_session(session))
    assert both.status_code == 200, describe(both)
    assert both.json()["publicKey"]["challenge"]

    change = {"current_password": body["password"], "new_password": "Another-Walrus-Orbit-Tangerine"}
    refused = portal.post_json("/profile/password", change, headers=with_session(session))
    assert refused.status_code == 400 and "second_factor_code" in error_body(refused)["fields"]
    changed = portal.post_json("/profile/password", dict(change, second_factor_code=codes[0]),
                               headers=with_session(session))
    assert changed.status_code == 204, describe(changed)


def test_a_security_notice_arrives_when_every_request_allowance_of_the_address_is_spent(stack, portal):
    from support import await_emails

    body = registration()
    resp = portal.post_json("/register", body)
    session = session_token(resp)
    # Anyone can spend the address's allowance (3 an hour) with forgot-password requests.
    for _ in range(4):
        assert portal.post_json("/forgot-password", {"email": body["email"]}).status_code == 202
    await_emails(stack, body["email"], "Reset your password", count=2)
    change = {"current_password": body["password"], "new_password": "Another-Walrus-Orbit-Tangerine"}
    assert portal.post_json("/profile/password", change, headers=with_session(session)).status_code == 204
    await_emails(stack, body["email"], "Your password was changed")
