"""End-to-end tests of account self-service over HTTP against the running local stack: email
confirmation, forgot/reset password, profile and password changes, the signed-in home page and the
email rate limits. Links are read from the emails the local SES (moto) recorded.

Token expiry cannot be waited for over HTTP (an hour for reset links, a day for confirmations): it
is pinned by the handler tests in shared/tests/self_service.rs with a test clock."""

from __future__ import annotations

import secrets

import pytest

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    BROWSER_ACCEPT,
    CSRF_COOKIE,
    SESSION_COOKIE,
    Page,
    Portal,
    await_emails,
    describe,
    emailed_token,
    emails_to,
    error_body,
    find_cookie,
    registration,
    session_token,
    strong_password,
    unique_email,
    unique_username,
    with_session,
)

CONFIRM_SUBJECT = "Confirm your email address"
RESET_SUBJECT = "Reset your password"
EXISTS_SUBJECT = "You already have an account"
NEW_EMAIL_SUBJECT = "Confirm your new email address"
CHANGE_NOTICE_SUBJECT = "A change of your email address was requested"
IN_USE_SUBJECT = "Someone tried to use your email address"
PASSWORD_NOTICE_SUBJECT = "Your password was changed"


# --- helpers --------------------------------------------------------------------------------------

def register(base_url: str, **overrides) -> tuple[dict, str]:
    """Registers a fresh contact over JSON (confirmation off); returns (request body, session)."""
    body, resp = Portal(base_url).register(**overrides)
    assert resp.status_code == 201, describe(resp)
    return body, session_token(resp)


def sign_in(base_url: str, login: str, password: str):
    return Portal(base_url).signin(login, password)


def profile_json(base_url: str, token: str):
    return Portal(base_url).get_json("/profile", headers=with_session(token))


def profile_of(base_url: str, token: str) -> dict:
    resp = profile_json(base_url, token)
    assert resp.status_code == 200, describe(resp)
    return resp.json()


def assert_error(resp, status: int, code: str, field: str | None = None) -> dict:
    assert resp.status_code == status, describe(resp)
    body = error_body(resp)
    assert body["error"] == code, body
    if field is not None:
        assert isinstance(body.get("fields"), dict) and isinstance(body["fields"].get(field), str), (
            f"expected a reason in fields.{field}: {body}")
    return body


def assert_no_session_cookie(resp) -> None:
    c = find_cookie(resp, SESSION_COOKIE)
    assert c is None or not c.value, f"no session expected, got Set-Cookie {c.raw}"


def token_of(stack, address: str, subject: str, path: str, count: int = 1) -> str:
    """The token of the `count`-th email `subject` to `address` (waiting for it)."""
    mail = await_emails(stack, address, subject, count)[count - 1]
    token = emailed_token(mail, stack.portal_url, path)
    assert len(token) == 43, f"a 256-bit base64url token expected, got {token!r}"
    return token


def assert_mail_count(stack, address: str, subject: str, expected: int) -> None:
    """Exactly `expected` emails `subject` reached `address`, and no more come."""
    if expected:
        await_emails(stack, address, subject, expected)
    stack.settle()
    got = emails_to(stack, address, subject)
    assert len(got) == expected, f"expected {expected} email(s) {subject!r} to {address}, got {len(got)}"


def same_answer(a, b) -> None:
    """Two responses a client cannot tell apart."""
    assert (a.status_code, a.content, a.headers.get("Content-Type")) == (
        b.status_code, b.content, b.headers.get("Content-Type")), f"{describe(a)} vs {describe(b)}"
    names = lambda r: sorted(r.raw.headers.getlist("Set-Cookie"))  # noqa: E731
    assert [h.split("=")[0] for h in names(a)] == [h.split("=")[0] for h in names(b)]


def page_as(base_url: str, path: str, token: str):
    """An HTML page as a browser carrying this session token sees it."""
    return Portal(base_url).get(path, headers={**with_session(token), "Accept": BROWSER_ACCEPT})


def open_page(portal: Portal, path: str):
    resp = portal.get_page(path)
    assert resp.status_code == 200, describe(resp)
    csrf = portal.http.cookies.get(CSRF_COOKIE)
    assert csrf, f"the page sets no {CSRF_COOKIE} cookie: {describe(resp)}"
    return Page(resp.text), csrf


# --- email confirmation ---------------------------------------------------------------------------

def test_registration_emails_a_confirmation_link_that_confirms_once(stack, base_url):
    body, session = register(base_url)
    assert profile_of(base_url, session)["email_confirmed"] is False
    token = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")

    # Following the link shows a button and changes nothing (mail scanners follow links).
    for _ in range(2):
        page = Portal(base_url).get_page(f"/confirm-email?token={token}")
        assert page.status_code == 200, describe(page)
        form = Page(page.text).form("token-form")
        assert form.attrs.get("method", "").lower() == "post"
        assert form.attrs.get("action") == "/confirm-email"
        assert form.value("token") == token
        assert form.value("csrf_token")
        assert "Confirm" in form.submit_labels()
    assert profile_of(base_url, session)["email_confirmed"] is False, "a GET confirmed the email"

    confirmed = Portal(base_url).post_json("/confirm-email", {"token": token})
    assert confirmed.status_code == 200, describe(confirmed)
    assert confirmed.json() == {"email": body["email"], "email_confirmed": True}
    assert profile_of(base_url, session)["email_confirmed"] is True

    reused = Portal(base_url).post_json("/confirm-email", {"token": token})
    assert_error(reused, 400, "token_invalid")


def test_confirmation_through_the_browser_form(stack, base_url, portal):
    body, session = register(base_url)
    token = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")
    page, csrf = open_page(portal, f"/confirm-email?token={token}")
    form = page.form("token-form")
    assert form.value("csrf_token") == csrf
    resp = portal.post_form("/confirm-email", {"csrf_token": csrf, "token": form.value("token")})
    assert resp.status_code == 200, describe(resp)
    assert "confirmed" in Page(resp.text).ids.get("message", ""), resp.text[:500]
    assert profile_of(base_url, session)["email_confirmed"] is True


def test_confirmation_form_without_csrf_token_is_403(stack, base_url, portal):
    body, session = register(base_url)
    token = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")
    open_page(portal, f"/confirm-email?token={token}")
    resp = portal.post_form("/confirm-email", {"token": token})
    assert resp.status_code == 403, describe(resp)
    assert profile_of(base_url, session)["email_confirmed"] is False


@pytest.mark.parametrize("token", ["", "short", "x" * 43, "unknown"],
                         ids=["empty", "short", "well-formed-unknown", "random-unknown"])
def test_unknown_confirmation_tokens_are_token_invalid(portal, token):
    if token == "unknown":
        token = secrets.token_urlsafe(32)
    assert_error(portal.post_json("/confirm-email", {"token": token}), 400, "token_invalid")


def test_confirmation_resend_answers_the_same_for_known_and_unknown_emails(stack, base_url):
    body, session = register(base_url)
    await_emails(stack, body["email"], CONFIRM_SUBJECT, 1)
    unknown = unique_email("nobody")

    known_resp = Portal(base_url).post_json("/confirm-email", {"email": body["email"]})
    unknown_resp = Portal(base_url).post_json("/confirm-email", {"email": unknown})
    assert known_resp.status_code == 202, describe(known_resp)
    assert known_resp.json() == {"status": "email_sent"}
    same_answer(known_resp, unknown_resp)

    token = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email", count=2)
    assert emails_to(stack, unknown) == []
    confirmed = Portal(base_url).post_json("/confirm-email", {"token": token})
    assert confirmed.status_code == 200, describe(confirmed)
    assert profile_of(base_url, session)["email_confirmed"] is True


# --- confirmation required ------------------------------------------------------------------------

def test_with_confirmation_required_new_and_taken_emails_get_the_same_202(confirmation_stack):
    stack = confirmation_stack
    base_url = stack.portal_url
    body = registration()
    new = Portal(base_url).post_json("/register", body)
    assert new.status_code == 202, describe(new)
    assert new.json() == {"status": "confirmation_sent"}
    assert_no_session_cookie(new)

    squatter = registration(email=body["email"].upper(), first_name="Mallory")
    taken = Portal(base_url).post_json("/register", squatter)
    same_answer(new, taken)
    assert_no_session_cookie(taken)

    token = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")
    notice = await_emails(stack, body["email"], EXISTS_SUBJECT)[0]
    assert f"{base_url}/forgot-password" in notice["body"], notice["body"]
    assert "Ada" in notice["body"], "the notice greets the owner, not the registrant"
    assert_mail_count(stack, body["email"], CONFIRM_SUBJECT, 1)

    before = sign_in(base_url, body["email"], body["password"])
    assert_error(before, 403, "forbidden")
    assert_no_session_cookie(before)
    assert_error(sign_in(base_url, body["email"], "wrong-password-entirely"), 401,
                 "invalid_credentials")
    assert_error(sign_in(base_url, body["email"], squatter["password"]), 401, "invalid_credentials")

    confirmed = Portal(base_url).post_json("/confirm-email", {"token": token})
    assert confirmed.status_code == 200, describe(confirmed)
    after = sign_in(base_url, body["email"], body["password"])
    assert after.status_code == 200, describe(after)
    profile = profile_of(base_url, session_token(after))
    assert (profile["first_name"], profile["email_confirmed"]) == ("Ada", True)


def test_with_confirmation_required_the_browser_form_shows_a_message(confirmation_stack):
    portal = Portal(confirmation_stack.portal_url)
    page, csrf = open_page(portal, "/register")
    body = registration()
    resp = portal.post_form("/register", dict(body, csrf_token=csrf))
    assert resp.status_code == 202, describe(resp)
    assert Page(resp.text).ids.get("message"), resp.text[:500]
    assert_no_session_cookie(resp)
    await_emails(confirmation_stack, body["email"], CONFIRM_SUBJECT)


# --- forgot and reset password --------------------------------------------------------------------

def test_forgot_password_answers_the_same_for_known_and_unknown_emails(stack, base_url):
    body, _ = register(base_url)
    unknown = unique_email("nobody")
    known_resp = Portal(base_url).post_json("/forgot-password", {"email": body["email"]})
    unknown_resp = Portal(base_url).post_json("/forgot-password", {"email": unknown})
    assert known_resp.status_code == 202, describe(known_resp)
    assert known_resp.json() == {"status": "email_sent"}
    same_answer(known_resp, unknown_resp)

    mail = await_emails(stack, body["email"], RESET_SUBJECT)[0]
    emailed_token(mail, base_url, "/reset-password")
    assert emails_to(stack, unknown) == [], "nothing is sent to an address without an account"


def test_forgot_password_rejects_a_malformed_email(portal):
    assert_error(portal.post_json("/forgot-password", {"email": 7}), 400, "validation_failed")
    assert_error(portal.post_json("/forgot-password", {}), 400, "validation_failed")


def test_a_reset_link_sets_a_new_password_once_ends_every_session_and_does_not_sign_in(
        stack, base_url):
    body, first_session = register(base_url)
    second = sign_in(base_url, body["email"], body["password"])
    assert second.status_code == 200, describe(second)
    second_session = session_token(second)

    forgot = Portal(base_url).post_json("/forgot-password", {"email": body["email"]})
    assert forgot.status_code == 202, describe(forgot)
    token = token_of(stack, body["email"], RESET_SUBJECT, "/reset-password")

    page = Portal(base_url).get_page(f"/reset-password?token={token}")
    assert page.status_code == 200, describe(page)
    form = Page(page.text).form("token-form")
    assert form.attrs.get("action") == "/reset-password"
    assert form.value("token") == token
    assert "new_password" in form.field_names()
    for session in (first_session, second_session):
        assert profile_json(base_url, session).status_code == 200, "a GET changed nothing"

    weak = Portal(base_url).post_json("/reset-password",
                                      {"token": token, "new_password": "password1234"})
    assert_error(weak, 400, "validation_failed", "new_password")

    new_password = strong_password()
    reset = Portal(base_url).post_json("/reset-password",
                                       {"token": token, "new_password": new_password})
    assert reset.status_code == 204, describe(reset)
    assert_no_session_cookie(reset)
    for session in (first_session, second_session):
        assert_error(profile_json(base_url, session), 401, "unauthenticated")

    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    assert sign_in(base_url, body["email"], new_password).status_code == 200

    reused = Portal(base_url).post_json("/reset-password",
                                        {"token": token, "new_password": strong_password()})
    assert_error(reused, 400, "token_invalid")
    assert sign_in(base_url, body["email"], new_password).status_code == 200, "reuse changed it"


@pytest.mark.parametrize("token", ["short", "x" * 43, "unknown"],
                         ids=["short", "well-formed-unknown", "random-unknown"])
def test_unknown_reset_tokens_are_token_invalid(portal, token):
    if token == "unknown":
        token = secrets.token_urlsafe(32)
    resp = portal.post_json("/reset-password", {"token": token, "new_password": strong_password()})
    assert_error(resp, 400, "token_invalid")


def test_an_empty_reset_token_is_refused(portal):
    resp = portal.post_json("/reset-password", {"token": "", "new_password": strong_password()})
    assert resp.status_code == 400, describe(resp)
    assert error_body(resp)["error"] in ("token_invalid", "validation_failed")


def test_a_confirmation_token_does_not_reset_a_password(stack, base_url):
    body, _ = register(base_url)
    token = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")
    resp = Portal(base_url).post_json("/reset-password",
                                      {"token": token, "new_password": strong_password()})
    assert_error(resp, 400, "token_invalid")
    assert sign_in(base_url, body["email"], body["password"]).status_code == 200


def test_forgot_and_reset_password_through_the_browser_forms(stack, base_url, portal):
    body, session = register(base_url)
    page, csrf = open_page(portal, "/forgot-password")
    assert "email" in page.form("forgot-form").field_names()
    sent = portal.post_form("/forgot-password", {"csrf_token": csrf, "email": body["email"]})
    assert sent.status_code == 202, describe(sent)
    assert Page(sent.text).ids.get("message"), sent.text[:500]
    token = token_of(stack, body["email"], RESET_SUBJECT, "/reset-password")

    page, csrf = open_page(portal, f"/reset-password?token={token}")
    form = page.form("token-form")
    weak = portal.post_form("/reset-password", {"csrf_token": csrf, "token": form.value("token"),
                                                "new_password": "password1234"})
    assert weak.status_code == 400, describe(weak)
    assert Page(weak.text).form("token-form").value("token") == token, "the form is shown again"

    new_password = strong_password()
    done = portal.post_form("/reset-password", {"csrf_token": csrf, "token": token,
                                                "new_password": new_password})
    assert done.status_code == 200, describe(done)
    message = Page(done.text).ids.get("message", "")
    assert "password" in message.lower() and "changed" in message.lower(), message
    assert_no_session_cookie(done)
    assert_error(profile_json(base_url, session), 401, "unauthenticated")
    assert sign_in(base_url, body["email"], new_password).status_code == 200


def test_emails_to_one_address_are_limited_with_the_same_answer(stack, base_url):
    limit = int(stack.env["PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR"])
    # The allowances count in one long window on the test stacks (conftest): none ends meanwhile.
    body, _ = register(base_url)  # its confirmation email is the address's first of the hour
    answers = [Portal(base_url).post_json("/forgot-password", {"email": body["email"]})
               for _ in range(limit + 2)]
    assert answers[0].status_code == 202, describe(answers[0])
    for later in answers[1:]:
        same_answer(answers[0], later)
    assert_mail_count(stack, body["email"], RESET_SUBJECT, limit - 1)


def test_emails_are_limited_per_source_address_with_the_same_answer(rate_limited_stack):
    stack = rate_limited_stack
    base_url = stack.portal_url
    per_address = int(stack.env["PORTAL_EMAILS_PER_ADDRESS_PER_HOUR"])
    assert per_address < 5, "the fixture's small limit"
    # (In one long allowance window, as on every test stack: see conftest.)
    # Every email a request causes counts, a registration's confirmation too.
    accounts = [register(base_url)[0]["email"] for _ in range(per_address + 2)]
    stack.settle()
    sent = {e: len(emails_to(stack, e, CONFIRM_SUBJECT)) for e in accounts}
    assert sum(sent.values()) == per_address, f"{per_address} per source address per hour: {sent}"

    # Over the allowance, a reset or a new confirmation link gets the same answer and no email.
    quiet = accounts[-1]
    answers = [Portal(base_url).post_json("/forgot-password", {"email": quiet}),
               Portal(base_url).post_json("/forgot-password", {"email": unique_email("nobody")}),
               Portal(base_url).post_json("/confirm-email", {"email": quiet}),
               Portal(base_url).post_json("/confirm-email", {"email": unique_email("nobody")})]
    assert answers[0].status_code == 202, describe(answers[0])
    same_answer(answers[0], answers[1])
    same_answer(answers[2], answers[3])
    stack.settle()
    assert emails_to(stack, quiet) == [], "nothing over the allowance"


# --- profile --------------------------------------------------------------------------------------

def test_profile_edits_names_and_phone_and_keeps_every_session(base_url):
    username = unique_username()
    body, current = register(base_url, username=username)
    other = session_token(sign_in(base_url, username, body["password"]))

    resp = Portal(base_url).post_json("/profile", {"first_name": "Augusta Ada",
                                                    "phone": "+44 20 7946 0018"},
                                      headers=with_session(current))
    assert resp.status_code == 200, describe(resp)
    edited = resp.json()
    assert (edited["first_name"], edited["last_name"]) == ("Augusta Ada", "Lovelace")
    assert edited["email"] == body["email"] and edited["username"] == username

    seen = profile_of(base_url, other)
    assert seen["first_name"] == "Augusta Ada", "a name change keeps the other sessions"
    assert seen.get("phone") in (None, "+44 20 7946 0018")  # the contract does not require it

    resp = Portal(base_url).post_json("/profile", {"last_name": "King"},
                                      headers=with_session(current))
    assert resp.status_code == 200, describe(resp)
    assert (resp.json()["first_name"], resp.json()["last_name"]) == ("Augusta Ada", "King")


def test_profile_username_cannot_change(base_url):
    username = unique_username()
    _, session = register(base_url, username=username)
    resp = Portal(base_url).post_json("/profile", {"username": unique_username(),
                                                    "first_name": "Changed"},
                                      headers=with_session(session))
    assert_error(resp, 400, "validation_failed", "username")
    profile = profile_of(base_url, session)
    assert (profile["username"], profile["first_name"]) == (username, "Ada"), "nothing changed"


def test_profile_bad_values_are_400_naming_the_field(base_url):
    _, session = register(base_url)
    resp = Portal(base_url).post_json("/profile", {"email": "not-an-email"},
                                      headers=with_session(session))
    assert_error(resp, 400, "validation_failed", "email")
    resp = Portal(base_url).post_json("/profile", {"first_name": 7},
                                      headers=with_session(session))
    assert_error(resp, 400, "validation_failed", "first_name")


def test_profile_without_session_is_401(portal):
    assert_error(portal.post_json("/profile", {"first_name": "Eve"}), 401, "unauthenticated")
    assert_error(portal.post_json("/profile/password", {"current_password": "x" * 20,
                                                        "new_password": strong_password()}),
                 401, "unauthenticated")


def change_email(base_url: str, session: str, email: str, password: str | None):
    body = {"email": email}
    if password is not None:
        body["current_password"] = password
    return Portal(base_url).post_json("/profile", body, headers=with_session(session))


def test_an_email_change_needs_the_current_password(stack, base_url):
    body, session = register(base_url)
    for password in (None, "not-my-password-at-all"):
        resp = change_email(base_url, session, unique_email("thief"), password)
        assert_error(resp, 400, "validation_failed", "current_password")
    profile = profile_of(base_url, session)
    assert (profile["email"], profile["pending_email"]) == (body["email"], None), "nothing moved"


def test_an_email_change_to_a_taken_address_answers_alike_and_tells_its_owner(stack, base_url):
    mine, session = register(base_url)
    theirs, _ = register(base_url)
    free = unique_email("free")
    taken = change_email(base_url, session, theirs["email"].upper(), mine["password"])
    moved = change_email(base_url, session, free, mine["password"])
    assert (taken.status_code, moved.status_code) == (200, 200), (describe(taken), describe(moved))
    assert taken.json()["pending_email"] == theirs["email"].upper()
    assert set(taken.json()) == set(moved.json())
    assert {k: v for k, v in taken.json().items() if k != "pending_email"} == \
        {k: v for k, v in moved.json().items() if k != "pending_email"}
    await_emails(stack, theirs["email"], IN_USE_SUBJECT)
    await_emails(stack, free, NEW_EMAIL_SUBJECT)
    stack.settle()
    assert emails_to(stack, theirs["email"], NEW_EMAIL_SUBJECT) == [], "no link to a taken address"
    notices = await_emails(stack, mine["email"], CHANGE_NOTICE_SUBJECT, count=2)
    assert any(theirs["email"].upper() in n["body"] for n in notices)
    assert any(free in n["body"] for n in notices)
    assert profile_of(base_url, session)["email"] == mine["email"]


def test_a_new_email_waits_for_the_link_sent_to_it(stack, base_url):
    body, current = register(base_url)
    first = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")
    assert Portal(base_url).post_json("/confirm-email", {"token": first}).status_code == 200
    assert profile_of(base_url, current)["email_confirmed"] is True
    other = session_token(sign_in(base_url, body["email"], body["password"]))

    new_email = unique_email("moved")
    resp = change_email(base_url, current, new_email, body["password"])
    assert resp.status_code == 200, describe(resp)
    changed = resp.json()
    assert (changed["email"], changed["pending_email"], changed["email_confirmed"]) == \
        (body["email"], new_email, True)

    # Until the link is followed the old address signs in and receives resets.
    assert profile_of(base_url, other)["pending_email"] == new_email, "nothing ended yet"
    assert sign_in(base_url, body["email"], body["password"]).status_code == 200
    assert_error(sign_in(base_url, new_email, body["password"]), 401, "invalid_credentials")
    page = page_as(base_url, "/profile", current)
    assert "profile-pending-email" in Page(page.text).ids
    notice = await_emails(stack, body["email"], CHANGE_NOTICE_SUBJECT)[-1]
    assert new_email in notice["body"]

    token = token_of(stack, new_email, NEW_EMAIL_SUBJECT, "/confirm-email")
    confirmed = Portal(base_url).post_json("/confirm-email", {"token": token})
    assert confirmed.status_code == 200, describe(confirmed)
    assert confirmed.json() == {"email": new_email, "email_confirmed": True}
    for session in (current, other):
        assert_error(profile_json(base_url, session), 401, "unauthenticated")
    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    moved = session_token(sign_in(base_url, new_email, body["password"]))
    profile = profile_of(base_url, moved)
    assert (profile["email"], profile["email_confirmed"], profile["pending_email"]) == \
        (new_email, True, None)
    # The old address is free again.
    register(base_url, email=body["email"])


def test_a_confirmation_for_an_address_the_contact_left_confirms_nothing(stack, base_url):
    body, session = register(base_url)
    old = token_of(stack, body["email"], CONFIRM_SUBJECT, "/confirm-email")
    new_email = unique_email("moved")
    resp = change_email(base_url, session, new_email, body["password"])
    assert resp.status_code == 200, describe(resp)
    token = token_of(stack, new_email, NEW_EMAIL_SUBJECT, "/confirm-email")
    assert Portal(base_url).post_json("/confirm-email", {"token": token}).status_code == 200
    assert_error(Portal(base_url).post_json("/confirm-email", {"token": old}), 400, "token_invalid")


def test_profile_page_has_the_forms(base_url):
    username = unique_username()
    body, session = register(base_url, username=username)
    resp = page_as(base_url, "/profile", session)
    assert resp.status_code == 200, describe(resp)
    page = Page(resp.text)
    profile_form = page.form("profile-form")
    assert {"csrf_token", "first_name", "last_name", "phone"} <= profile_form.field_names()
    assert "username" not in profile_form.field_names()
    email_form = page.form("email-form")
    assert {"csrf_token", "email", "current_password"} <= email_form.field_names()
    assert email_form.value("email") == body["email"]
    assert {"csrf_token", "current_password", "new_password"} <= page.form(
        "password-form").field_names()
    assert "email-unconfirmed" in page.ids
    assert username in resp.text


def test_profile_forms_in_a_browser(base_url, portal):
    body, session = register(base_url)
    portal.http.cookies.set(SESSION_COOKIE, session)
    page, csrf = open_page(portal, "/profile")
    saved = portal.post_form("/profile", {"csrf_token": csrf, "first_name": "Augusta",
                                          "last_name": "King", "phone": ""})
    assert saved.status_code == 303, describe(saved)
    assert saved.headers.get("Location") == "/profile"
    profile = profile_of(base_url, session)
    assert (profile["first_name"], profile["last_name"]) == ("Augusta", "King")

    bad = portal.post_form("/profile/password", {"csrf_token": csrf,
                                                 "current_password": "not-my-password-at-all",
                                                 "new_password": strong_password()})
    assert bad.status_code == 400, describe(bad)
    assert "password-form" in {f.attrs.get("id") for f in Page(bad.text).forms}

    forged = portal.post_form("/profile", {"first_name": "Mallory"})
    assert forged.status_code == 403, describe(forged)
    assert profile_of(base_url, session)["first_name"] == "Augusta"


# --- password change ------------------------------------------------------------------------------

def test_changing_the_password_needs_the_current_one_and_renews_the_session(base_url):
    body, current = register(base_url)
    other = session_token(sign_in(base_url, body["email"], body["password"]))

    def change(current_password: str, new_password: str):
        return Portal(base_url).post_json("/profile/password",
                                          {"current_password": current_password,
                                           "new_password": new_password},
                                          headers=with_session(current))

    new_password = strong_password()
    assert_error(change("not-my-password-at-all", new_password), 400, "validation_failed",
                 "current_password")
    assert_error(change(body["password"], "password1234"), 400, "validation_failed",
                 "new_password")
    assert profile_json(base_url, other).status_code == 200, "failed changes end nothing"

    changed = change(body["password"], new_password)
    assert changed.status_code == 204, describe(changed)
    renewed = session_token(changed)
    assert renewed != current
    for old in (current, other):
        assert_error(profile_json(base_url, old), 401, "unauthenticated")
    assert profile_of(base_url, renewed)["email"] == body["email"]

    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    assert sign_in(base_url, body["email"], new_password).status_code == 200


def test_wrong_current_passwords_count_towards_lockout(stack, base_url):
    threshold = int(stack.env["PORTAL_LOCKOUT_THRESHOLD"])
    body, session = register(base_url)
    for _ in range(threshold):
        resp = Portal(base_url).post_json("/profile/password",
                                          {"current_password": "guess-guess-guess",
                                           "new_password": strong_password()},
                                          headers=with_session(session))
        assert_error(resp, 400, "validation_failed", "current_password")
    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")


# --- home page ------------------------------------------------------------------------------------

def test_home_signed_in_shows_the_name_the_links_and_sign_out(base_url):
    _, session = register(base_url, first_name="Grace")
    resp = page_as(base_url, "/", session)
    assert resp.status_code == 200, describe(resp)
    page = Page(resp.text)
    assert "Grace" in page.ids.get("greeting", ""), page.ids
    assert "/profile" in [href for _, href in page.links]
    assert "/admin/contacts" not in [href for _, href in page.links]
    signout = page.form("signout-form")
    assert signout.attrs.get("action") == "/signout"


def test_home_shows_an_administrator_the_roles_and_the_contacts_link(base_url):
    signed_in = sign_in(base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert signed_in.status_code == 200, describe(signed_in)
    token = session_token(signed_in)
    resp = page_as(base_url, "/", token)
    assert resp.status_code == 200, describe(resp)
    page = Page(resp.text)
    assert page.ids.get("greeting"), page.ids
    assert "Administrators" in resp.text, "the web roles are shown"
    hrefs = [href for _, href in page.links]
    assert "/admin/contacts" in hrefs and "/profile" in hrefs, page.links


# --- notices --------------------------------------------------------------------------------------

def test_a_password_change_sends_a_notice_to_the_account(stack, base_url):
    body, session = register(base_url)
    changed = Portal(base_url).post_json("/profile/password",
                                         {"current_password": body["password"],
                                          "new_password": strong_password()},
                                         headers=with_session(session))
    assert changed.status_code == 204, describe(changed)
    notice = await_emails(stack, body["email"], PASSWORD_NOTICE_SUBJECT)[-1]
    assert "was changed on" in notice["body"] and body["password"] not in notice["body"]


def test_a_reset_sends_a_notice_to_the_account(stack, base_url):
    body, _ = register(base_url)
    forgot = Portal(base_url).post_json("/forgot-password", {"email": body["email"]})
    assert forgot.status_code == 202, describe(forgot)
    token = token_of(stack, body["email"], RESET_SUBJECT, "/reset-password")
    reset = Portal(base_url).post_json("/reset-password",
                                       {"token": token, "new_password": strong_password()})
    assert reset.status_code == 204, describe(reset)
    notice = await_emails(stack, body["email"], PASSWORD_NOTICE_SUBJECT)[-1]
    assert "reset with an emailed link" in notice["body"], notice
