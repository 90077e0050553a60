"""End-to-end tests of the walking skeleton over HTTP against the running local stack:
registration, sign-in, profile and sign-out, for JSON clients and for browsers posting forms."""

from __future__ import annotations

import json
import threading

import pytest

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    BROWSER_ACCEPT,
    CSRF_COOKIE,
    SESSION_COOKIE,
    Page,
    Portal,
    describe,
    error_body,
    find_cookie,
    path_of,
    registration,
    session_token,
    set_cookies,
    strong_password,
    unique_email,
    unique_username,
    with_session,
)


def registered(portal: Portal, **overrides) -> tuple[dict, str, dict]:
    """Register a fresh contact over JSON from a throwaway client (so `portal`'s cookie jar stays
    signed out); returns (request body, session token, response body)."""
    body, resp = Portal(portal.base_url).register(**overrides)
    assert resp.status_code == 201, describe(resp)
    return body, session_token(resp), resp.json()


def assert_validation_failed(resp, field: str | None = None) -> dict:
    assert resp.status_code == 400, describe(resp)
    body = error_body(resp)
    assert body["error"] == "validation_failed", body
    if field is not None:
        assert isinstance(body.get("fields"), dict), f"expected fields.{field}: {body}"
        assert isinstance(body["fields"].get(field), str) and body["fields"][field], (
            f"expected a reason in fields.{field}: {body}"
        )
    return body


def assert_not_registered(portal: Portal, email: str) -> None:
    """Nothing was half-written: the email can still be registered."""
    _, resp = Portal(portal.base_url).register(email=email)
    assert resp.status_code == 201, f"email should still be free: {describe(resp)}"


# --- registration over JSON -----------------------------------------------------------------------

def test_register_json_creates_contact_and_signs_in(portal):
    username = unique_username()
    body = registration(username=username, phone="+44 20 7946 0018", first_name="Grace",
                        last_name="Hopper")
    resp = portal.post_json("/register", body)
    assert resp.status_code == 201, describe(resp)
    assert "application/json" in resp.headers.get("Content-Type", "")
    created = resp.json()
    assert isinstance(created.get("contact_id"), str) and created["contact_id"]
    assert created["email"] == body["email"]
    assert created["email_confirmed"] is False

    token = session_token(resp)
    profile = portal.get_json("/profile", headers=with_session(token))
    assert profile.status_code == 200, describe(profile)
    p = profile.json()
    assert p["contact_id"] == created["contact_id"]
    assert p["email"] == body["email"]
    assert p["first_name"] == "Grace"
    assert p["last_name"] == "Hopper"
    assert p["username"] == username
    assert isinstance(p["roles"], list)
    assert p["email_confirmed"] is False


def test_session_cookie_attributes_on_http(portal):
    _, resp = portal.register()
    assert resp.status_code == 201, describe(resp)
    c = find_cookie(resp, SESSION_COOKIE)
    assert c is not None, [s.raw for s in set_cookies(resp)]
    assert c.name == SESSION_COOKIE, f"no __Host- prefix over plain http: {c.raw}"
    assert c.has("httponly"), c.raw
    assert c.attrs.get("samesite", "").lower() == "lax", c.raw
    assert c.attrs.get("path") == "/", c.raw
    assert not c.has("secure"), f"no Secure over plain http: {c.raw}"
    assert not c.has("domain"), f"host-only cookie expected: {c.raw}"
    assert len(c.value) >= 22, f"a session token carries at least 128 bits: {c.raw}"


def test_register_taken_email_is_409_case_insensitively(portal):
    body, _, _ = registered(portal)
    again = registration(email=body["email"].upper())
    resp = portal.post_json("/register", again)
    assert resp.status_code == 409, describe(resp)
    assert error_body(resp)["error"] == "email_taken"
    assert find_cookie(resp, SESSION_COOKIE) is None, "no session for a refused registration"


def test_register_taken_email_in_another_idna_spelling_is_409(portal):
    local = unique_email().split("@")[0]
    first = portal.post_json("/register", registration(email=f"{local}@bücher.example"))
    assert first.status_code == 201, describe(first)
    assert first.json()["email"] == f"{local}@xn--bcher-kva.example", "kept in its ASCII form"
    again = portal.post_json("/register", registration(email=f"{local.upper()}@xn--bcher-kva.example"))
    assert again.status_code == 409, describe(again)
    assert error_body(again)["error"] == "email_taken"


def test_register_taken_username_is_400(portal):
    username = unique_username()
    registered(portal, username=username)
    resp = portal.post_json("/register", registration(username=username.upper()))
    assert_validation_failed(resp, "username")


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("Xq7#vR2!mK9", id="11-chars"),
        pytest.param("password1234", id="common"),
        pytest.param("qwertyuiopasdf", id="keyboard-walk"),
    ],
)
def test_register_rejects_weak_passwords(portal, password):
    email = unique_email()
    resp = portal.post_json("/register", registration(email=email, password=password))
    assert_validation_failed(resp, "password")
    assert_not_registered(portal, email)


def test_register_accepts_64_char_password_verified_exactly(portal):
    password = ("Nebula-Quartz-Harvest-" + "x7Kp" * 20)[:64]
    assert len(password) == 64
    body, _, _ = registered(portal, password=password)
    ok = portal.signin(body["email"], password)
    assert ok.status_code == 200, describe(ok)
    truncated = portal.signin(body["email"], password[:63])
    assert truncated.status_code == 401, f"no truncation: {describe(truncated)}"


def test_register_rejects_over_long_email(portal):
    email = "a" * 64 + "@" + ("b" * 63 + ".") * 3 + "example.com"
    assert len(email) > 254
    resp = portal.post_json("/register", registration(email=email))
    assert_validation_failed(resp, "email")


@pytest.mark.parametrize(
    "email",
    [pytest.param("not-an-email", id="no-at"), pytest.param("", id="empty")],
)
def test_register_rejects_bad_email(portal, email):
    resp = portal.post_json("/register", registration(email=email))
    assert_validation_failed(resp, "email")


def test_register_malformed_json_is_400(portal):
    resp = portal.post_json("/register", '{"email": "x@example.com", "password": ')
    assert_validation_failed(resp)


@pytest.mark.parametrize("body", ["[]", "null", '"text"', "42", ""])
def test_register_non_object_json_is_400(portal, body):
    resp = portal.post_json("/register", body)
    assert_validation_failed(resp)


@pytest.mark.parametrize(
    "field,value",
    [
        ("email", 5),
        ("password", ["a", "b"]),
        ("first_name", {"x": 1}),
        ("last_name", None),
        ("username", 12),
        ("phone", True),
    ],
)
def test_register_wrong_types_are_400_naming_the_field(portal, field, value):
    body = registration()
    body[field] = value
    resp = portal.post_json("/register", body)
    assert_validation_failed(resp, field)


@pytest.mark.parametrize("field", ["email", "password", "first_name", "last_name"])
def test_register_missing_field_is_400_naming_it(portal, field):
    body = registration()
    del body[field]
    resp = portal.post_json("/register", body)
    assert_validation_failed(resp, field)


@pytest.mark.parametrize(
    "field,value",
    [
        ("first_name", "Ada\u202eecalevoL"),
        ("first_name", "Ada\u0000"),
        ("last_name", "Love\u0007lace"),
        ("username", "ada\u200bbot"),
        ("email", "ada\u0000@example.com"),
        ("email", "ada\u200b@example.com"),
        ("email", "ada\u202e@example.com"),
        ("email", "\ufeffada@example.com"),
    ],
    ids=["rlo-override", "nul", "bell", "zero-width", "nul-in-email", "zero-width-in-email", "rlo-in-email",
         "bom-in-email"],
)
def test_register_odd_unicode_is_400(portal, field, value):
    email = unique_email()
    body = registration(email=email)
    if field == "username":
        value = value + unique_username()
    body[field] = value
    resp = portal.post_json("/register", body)
    assert_validation_failed(resp, field)
    assert_not_registered(portal, email)


def test_register_lone_surrogate_escape_is_4xx_not_500(portal):
    email = unique_email()
    raw = json.dumps(registration(email=email))[:-1] + ', "first_name": "\\ud800"}'
    resp = portal.post_json("/register", raw)
    assert 400 <= resp.status_code < 500, describe(resp)
    error_body(resp)


def test_register_body_over_16k_is_413(portal):
    body = registration(last_name="L" * 17000)
    resp = portal.post_json("/register", body)
    assert resp.status_code == 413, describe(resp)
    assert error_body(resp)["error"] == "payload_too_large"
    assert_not_registered(portal, body["email"])


def test_register_body_just_under_16k_is_not_413(portal):
    body = registration(last_name="L")
    padding = 16384 - len(json.dumps(body)) - len(', "pad": ""')
    raw = json.dumps(body)[:-1] + ', "pad": "' + "p" * padding + '"}'
    assert len(raw.encode()) <= 16384
    resp = portal.post_json("/register", raw)
    assert resp.status_code != 413, describe(resp)
    assert resp.status_code < 500, describe(resp)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/xml", "multipart/form-data; boundary=x"],
    ids=["missing", "text-plain", "xml", "multipart"],
)
def test_register_other_content_type_is_415(portal, content_type):
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    email = unique_email()
    resp = portal.post("/register", data=json.dumps(registration(email=email)).encode(),
                       headers=headers)
    assert resp.status_code == 415, describe(resp)
    assert error_body(resp)["error"] == "unsupported_media_type"
    assert_not_registered(portal, email)


def test_json_content_type_with_charset_is_accepted(portal):
    resp = portal.post("/register", data=json.dumps(registration()),
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert resp.status_code == 201, describe(resp)


def test_ten_concurrent_registrations_of_one_email_one_wins(new_portal):
    email = unique_email("race")
    barrier = threading.Barrier(10)
    results: list = [None] * 10

    def attempt(i: int) -> None:
        client = new_portal()
        body = registration(email=email if i % 2 else email.upper(), first_name=f"Racer{i}")
        barrier.wait()
        try:
            results[i] = client.post_json("/register", body)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    statuses = [getattr(r, "status_code", repr(r)) for r in results]
    assert sorted(statuses, key=str) == [201] + [409] * 9, statuses
    for r in results:
        if r.status_code == 409:
            assert error_body(r)["error"] == "email_taken"


# --- sign-in over JSON ----------------------------------------------------------------------------

def test_signin_json_by_email_and_username_case_insensitive(portal):
    username = unique_username()
    body, reg_token, created = registered(portal, username=username)

    by_email = portal.signin(body["email"].upper(), body["password"])
    assert by_email.status_code == 200, describe(by_email)
    b = by_email.json()
    assert b["contact_id"] == created["contact_id"]
    assert b["email"] == body["email"]
    assert isinstance(b["roles"], list)
    t1 = session_token(by_email)

    by_username = portal.signin(username.upper(), body["password"])
    assert by_username.status_code == 200, describe(by_username)
    assert by_username.json()["contact_id"] == created["contact_id"]
    t2 = session_token(by_username)

    assert len({reg_token, t1, t2}) == 3, "a new session token at every sign-in"
    prof = portal.get_json("/profile", headers=with_session(t2))
    assert prof.status_code == 200, describe(prof)
    assert prof.json()["contact_id"] == created["contact_id"]
    # This client signed in again carrying t1: a sign-in ends the session it arrived with.
    assert portal.get_json("/profile", headers=with_session(t1)).status_code == 401


def test_signin_cookie_attributes(portal):
    body, _, _ = registered(portal)
    resp = portal.signin(body["email"], body["password"])
    assert resp.status_code == 200, describe(resp)
    c = find_cookie(resp, SESSION_COOKIE)
    assert c is not None and c.name == SESSION_COOKIE, [s.raw for s in set_cookies(resp)]
    assert c.has("httponly") and c.attrs.get("path") == "/", c.raw
    assert c.attrs.get("samesite", "").lower() == "lax", c.raw
    assert not c.has("secure"), c.raw


def test_signin_failures_are_indistinguishable(portal):
    body, _, _ = registered(portal)
    wrong = portal.signin(body["email"], body["password"] + "!")
    unknown = portal.signin(unique_email("nobody"), body["password"])
    assert wrong.status_code == 401, describe(wrong)
    assert unknown.status_code == 401, describe(unknown)
    assert error_body(wrong)["error"] == "invalid_credentials"
    assert wrong.content == unknown.content, (wrong.text, unknown.text)
    assert wrong.headers.get("Content-Type") == unknown.headers.get("Content-Type")
    assert find_cookie(wrong, SESSION_COOKIE) is None
    assert find_cookie(unknown, SESSION_COOKIE) is None


def test_lockout_after_five_failures_with_the_same_answer(portal):
    body, _, _ = registered(portal)
    reference = portal.signin(unique_email("nobody"), "Whatever-Password-123")
    assert reference.status_code == 401, describe(reference)
    for i in range(5):
        r = portal.signin(body["email"], f"Wrong-Password-{i}-abcdef")
        assert r.status_code == 401, describe(r)
        assert r.content == reference.content
    locked = portal.signin(body["email"], body["password"])
    assert locked.status_code == 401, f"account should be locked: {describe(locked)}"
    assert locked.content == reference.content, (locked.text, reference.text)
    assert find_cookie(locked, SESSION_COOKIE) is None


def test_lockout_also_applies_when_signing_in_by_username(portal):
    username = unique_username()
    body, _, _ = registered(portal, username=username)
    for i in range(5):
        r = portal.signin(username, f"Wrong-Password-{i}-abcdef")
        assert r.status_code == 401, describe(r)
    locked = portal.signin(body["email"], body["password"])
    assert locked.status_code == 401, describe(locked)
    assert error_body(locked)["error"] == "invalid_credentials"


def test_success_resets_the_failure_count(portal):
    body, _, _ = registered(portal)
    for round_ in range(2):
        for i in range(4):
            r = portal.signin(body["email"], f"Wrong-Password-{round_}-{i}-xyz")
            assert r.status_code == 401, describe(r)
        ok = portal.signin(body["email"], body["password"])
        assert ok.status_code == 200, f"round {round_}: {describe(ok)}"


def test_signin_malformed_json_is_400(portal):
    assert_validation_failed(portal.post_json("/signin", '{"login": '))


@pytest.mark.parametrize("missing", ["login", "password"])
def test_signin_missing_field_is_400(portal, missing):
    body = {"login": unique_email(), "password": strong_password()}
    del body[missing]
    assert_validation_failed(portal.post_json("/signin", body), missing)


def test_signin_other_content_type_is_415(portal):
    resp = portal.post("/signin", data="login=a&password=b", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415, describe(resp)
    assert error_body(resp)["error"] == "unsupported_media_type"


def test_admin_signs_in_with_administrators_role(portal):
    resp = portal.signin(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert body["email"] == ADMIN_EMAIL
    assert "Administrators" in body["roles"], body
    prof = portal.get_json("/profile", headers=with_session(session_token(resp)))
    assert prof.status_code == 200, describe(prof)
    assert "Administrators" in prof.json()["roles"]


def test_registered_contact_is_not_an_administrator(portal):
    body, _, _ = registered(portal)
    resp = portal.signin(body["email"], body["password"])
    assert resp.status_code == 200, describe(resp)
    assert "Administrators" not in resp.json()["roles"]


# --- sign-out and profile over JSON ---------------------------------------------------------------

@pytest.mark.parametrize("payload", ["", "{}"], ids=["empty", "empty-object"])
def test_signout_json_revokes_the_session(portal, payload):
    body, token, _ = registered(portal)
    assert portal.get_json("/profile", headers=with_session(token)).status_code == 200
    out = portal.post("/signout", data=payload,
                      headers={"Content-Type": "application/json", **with_session(token)})
    assert out.status_code == 204, describe(out)
    assert out.content == b""

    after = portal.get_json("/profile", headers=with_session(token))
    assert after.status_code == 401, f"old token must be revoked: {describe(after)}"
    assert error_body(after)["error"] == "unauthenticated"
    page = portal.get("/profile", headers={"Accept": BROWSER_ACCEPT, **with_session(token)})
    assert page.status_code == 303, describe(page)
    assert path_of(page.headers["Location"]) == "/signin"


def test_signout_ends_only_that_session(portal):
    body, token_a, _ = registered(portal)
    other = portal.signin(body["email"], body["password"])
    token_b = session_token(other)
    out = portal.post("/signout", data="{}",
                      headers={"Content-Type": "application/json", **with_session(token_a)})
    assert out.status_code == 204, describe(out)
    assert portal.get_json("/profile", headers=with_session(token_a)).status_code == 401
    assert portal.get_json("/profile", headers=with_session(token_b)).status_code == 200


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
def test_profile_without_session_is_401_json(portal, accept):
    headers = {"Accept": accept} if accept else {}
    resp = portal.get("/profile", headers=headers)
    assert resp.status_code == 401, describe(resp)
    assert error_body(resp)["error"] == "unauthenticated"


def test_profile_with_bogus_token_is_401(portal):
    resp = portal.get_json("/profile", headers=with_session("A" * 43))
    assert resp.status_code == 401, describe(resp)
    assert error_body(resp)["error"] == "unauthenticated"


def test_profile_without_session_redirects_browsers_to_signin(portal):
    resp = portal.get_page("/profile")
    assert resp.status_code == 303, describe(resp)
    assert path_of(resp.headers["Location"]) == "/signin"


def test_profile_html_for_browsers(portal):
    body, token, _ = registered(portal, first_name="Katherine", last_name="Johnson")
    resp = portal.get("/profile", headers={"Accept": BROWSER_ACCEPT, **with_session(token)})
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("text/html")
    assert body["email"] in resp.text
    assert "Katherine" in resp.text


def test_profile_json_without_accept_header(portal):
    body, token, _ = registered(portal)
    resp = portal.get("/profile", headers=with_session(token))
    assert resp.status_code == 200, describe(resp)
    assert "application/json" in resp.headers.get("Content-Type", "")
    assert resp.json()["email"] == body["email"]


# --- origin checks for JSON -----------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:1"])
def test_cross_origin_json_register_is_403(portal, origin):
    email = unique_email()
    resp = portal.post_json("/register", registration(email=email), headers={"Origin": origin})
    assert resp.status_code == 403, describe(resp)
    assert error_body(resp)["error"] == "forbidden"
    assert find_cookie(resp, SESSION_COOKIE) is None
    assert_not_registered(portal, email)


def test_cross_origin_json_signin_is_403(portal):
    body, _, _ = registered(portal)
    resp = portal.post_json("/signin", {"login": body["email"], "password": body["password"]},
                            headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403, describe(resp)
    assert error_body(resp)["error"] == "forbidden"
    assert find_cookie(resp, SESSION_COOKIE) is None


def test_cross_origin_json_signout_is_403_and_keeps_the_session(portal):
    _, token, _ = registered(portal)
    resp = portal.post("/signout", data="{}", headers={
        "Content-Type": "application/json", "Origin": "https://evil.example", **with_session(token)})
    assert resp.status_code == 403, describe(resp)
    assert portal.get_json("/profile", headers=with_session(token)).status_code == 200


def test_same_origin_json_is_accepted(portal):
    resp = portal.post_json("/register", registration(), headers={"Origin": portal.base_url})
    assert resp.status_code == 201, describe(resp)


# --- pages ----------------------------------------------------------------------------------------

def test_home_signed_out_links(portal):
    resp = portal.get_page("/")
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("text/html")
    page = Page(resp.text)
    assert page.link_href("Sign in") is not None, page.links
    assert path_of(page.link_href("Sign in")) == "/signin"
    assert path_of(page.link_href("Register") or "") == "/register", page.links
    assert path_of(page.link_href("Redeem invitation") or "") == "/redeem", page.links
    assert "greeting" not in page.ids
    assert not [f for f in page.forms if f.attrs.get("id") == "signout-form"]


def test_home_signed_in_greets_and_offers_sign_out(portal):
    _, token, _ = registered(portal, first_name="Hedy")
    resp = portal.get("/", headers={"Accept": BROWSER_ACCEPT, **with_session(token)})
    assert resp.status_code == 200, describe(resp)
    page = Page(resp.text)
    assert "Hedy" in page.ids.get("greeting", ""), page.ids
    assert path_of(page.link_href("Profile") or "") == "/profile", page.links
    assert page.link_href("Sign in") is None, "signed in: no Sign in link"
    form = page.form("signout-form")
    assert form.attrs.get("method", "").lower() == "post"
    assert path_of(form.attrs.get("action", "")) == "/signout"
    assert form.value("csrf_token"), "sign-out form carries a csrf_token"
    assert "Sign out" in form.submit_labels(), form.buttons


def test_home_escapes_the_first_name(portal):
    body, resp = Portal(portal.base_url).register(first_name="<b>Bold</b>")
    if resp.status_code == 400 and "first_name" in resp.json().get("fields", {}):
        pytest.skip("the portal refuses markup characters in names")
    assert resp.status_code == 201, describe(resp)
    token = session_token(resp)
    resp = portal.get("/", headers={"Accept": BROWSER_ACCEPT, **with_session(token)})
    assert resp.status_code == 200, describe(resp)
    assert "<b>Bold</b>" not in resp.text
    assert "Bold" in Page(resp.text).ids.get("greeting", "")


def test_signin_page(portal):
    resp = portal.get_page("/signin")
    assert resp.status_code == 200, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("text/html")
    page = Page(resp.text)
    form = page.form("signin-form")
    assert form.attrs.get("method", "").lower() == "post"
    assert path_of(form.attrs.get("action", "")) == "/signin"
    assert {"login", "password", "csrf_token"} <= form.field_names()
    csrf = find_cookie(resp, CSRF_COOKIE)
    assert csrf is not None, [c.raw for c in set_cookies(resp)]
    assert csrf.name == CSRF_COOKIE, "no __Host- prefix over plain http"
    assert form.value("csrf_token") == csrf.value, "double-submit: field equals cookie"
    assert path_of(page.link_href("Register") or "") == "/register", page.links
    assert path_of(page.link_href("Redeem invitation") or "") == "/redeem", page.links


def test_register_page(portal):
    resp = portal.get_page("/register")
    assert resp.status_code == 200, describe(resp)
    page = Page(resp.text)
    form = page.form("register-form")
    assert form.attrs.get("method", "").lower() == "post"
    assert path_of(form.attrs.get("action", "")) == "/register"
    assert {"email", "password", "first_name", "last_name", "username", "phone",
            "csrf_token"} <= form.field_names()
    assert form.submit_labels(), "a submit button"
    csrf = find_cookie(resp, CSRF_COOKIE)
    assert csrf is not None and form.value("csrf_token") == csrf.value


def test_each_visitor_gets_a_different_csrf_token(new_portal):
    a = find_cookie(new_portal().get_page("/signin"), CSRF_COOKIE)
    b = find_cookie(new_portal().get_page("/signin"), CSRF_COOKIE)
    assert a is not None and b is not None
    assert a.value != b.value


# --- browser forms --------------------------------------------------------------------------------

def open_form(portal: Portal, path: str, form_id: str):
    resp = portal.get_page(path)
    assert resp.status_code == 200, describe(resp)
    return Page(resp.text).form(form_id)


def form_register(portal: Portal, **overrides) -> tuple[dict, object]:
    form = open_form(portal, "/register", "register-form")
    fields = registration(username="", phone="")
    fields.update(overrides)
    fields["csrf_token"] = form.value("csrf_token")
    return fields, portal.post_form("/register", fields)


def test_form_register_redirects_home_signed_in(portal):
    fields, resp = form_register(portal, first_name="Radia", last_name="Perlman",
                                 username=unique_username(), phone="+1 555 0100")
    assert resp.status_code == 303, describe(resp)
    assert path_of(resp.headers["Location"]) == "/"
    token = session_token(resp)
    home = portal.get("/", headers={"Accept": BROWSER_ACCEPT, **with_session(token)})
    assert "Radia" in Page(home.text).ids.get("greeting", ""), home.text[:500]
    prof = portal.get_json("/profile", headers=with_session(token))
    assert prof.status_code == 200 and prof.json()["email"] == fields["email"]
    assert prof.json()["username"] == fields["username"]


def test_form_register_with_cookie_jar_like_a_browser(portal):
    """The session cookie set by the redirect works when sent back by a cookie jar."""
    _, resp = form_register(portal, first_name="Barbara")
    assert resp.status_code == 303, describe(resp)
    home = portal.get_page("/")
    assert "Barbara" in Page(home.text).ids.get("greeting", "")


def test_form_register_validation_error_rerenders(portal):
    fields, resp = form_register(portal, password="short")
    assert resp.status_code == 400, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("text/html")
    assert find_cookie(resp, SESSION_COOKIE) is None
    Page(resp.text).form("register-form")
    assert_not_registered(portal, fields["email"])


def test_form_register_without_csrf_token_is_403(portal):
    open_form(portal, "/register", "register-form")  # the cookie is in the jar
    fields = registration()
    resp = portal.post_form("/register", fields)
    assert resp.status_code == 403, describe(resp)
    assert find_cookie(resp, SESSION_COOKIE) is None
    assert_not_registered(portal, fields["email"])


def test_form_register_with_mismatched_csrf_token_is_403(portal, new_portal):
    open_form(portal, "/register", "register-form")
    other = open_form(new_portal(), "/register", "register-form").value("csrf_token")
    fields = registration()
    resp = portal.post_form("/register", {**fields, "csrf_token": other})
    assert resp.status_code == 403, describe(resp)
    assert_not_registered(portal, fields["email"])


def test_form_register_without_csrf_cookie_is_403(portal, new_portal):
    token = open_form(new_portal(), "/register", "register-form").value("csrf_token")
    fields = registration()
    resp = portal.post_form("/register", {**fields, "csrf_token": token})  # empty jar
    assert resp.status_code == 403, describe(resp)
    assert_not_registered(portal, fields["email"])


def test_form_signin_redirects_home_with_new_session(portal):
    body, reg_token, _ = registered(portal)
    form = open_form(portal, "/signin", "signin-form")
    resp = portal.post_form("/signin", {"login": body["email"], "password": body["password"],
                                        "csrf_token": form.value("csrf_token")})
    assert resp.status_code == 303, describe(resp)
    assert path_of(resp.headers["Location"]) == "/"
    token = session_token(resp)
    assert token != reg_token
    assert portal.get_json("/profile", headers=with_session(token)).status_code == 200


def test_form_signin_failure_rerenders_with_401(portal):
    body, _, _ = registered(portal)
    form = open_form(portal, "/signin", "signin-form")
    wrong = body["password"] + "-wrong"
    resp = portal.post_form("/signin", {"login": body["email"], "password": wrong,
                                        "csrf_token": form.value("csrf_token")})
    assert resp.status_code == 401, describe(resp)
    assert resp.headers.get("Content-Type", "").startswith("text/html")
    assert find_cookie(resp, SESSION_COOKIE) is None
    again = Page(resp.text).form("signin-form")
    assert again.value("csrf_token"), "the re-rendered form can be submitted again"
    assert wrong not in resp.text, "the password is never echoed back"
    fresh = portal.get_page("/signin")
    fresh_form = Page(fresh.text).form("signin-form")

    def neutral(text: str, form) -> str:
        return text.replace(form.value("csrf_token"), "").replace(body["email"], "")

    assert neutral(resp.text, again) != neutral(fresh.text, fresh_form), (
        "the failed page should carry an error message"
    )


def test_form_signin_without_csrf_token_is_403(portal):
    body, _, _ = registered(portal)
    open_form(portal, "/signin", "signin-form")
    resp = portal.post_form("/signin", {"login": body["email"], "password": body["password"]})
    assert resp.status_code == 403, describe(resp)
    assert find_cookie(resp, SESSION_COOKIE) is None


def test_form_signout_redirects_home_and_revokes(portal):
    body, token, _ = registered(portal, first_name="Frances")
    portal.http.cookies.set(SESSION_COOKIE, token)  # this browser is signed in
    home = portal.get_page("/")
    assert home.status_code == 200, describe(home)
    form = Page(home.text).form("signout-form")
    resp = portal.post_form("/signout", {"csrf_token": form.value("csrf_token")})
    assert resp.status_code == 303, describe(resp)
    assert path_of(resp.headers["Location"]) == "/"
    after = portal.get("/profile", headers={"Accept": BROWSER_ACCEPT, **with_session(token)})
    assert after.status_code == 303, f"old session must be revoked: {describe(after)}"
    assert path_of(after.headers["Location"]) == "/signin"


def test_form_signout_without_csrf_is_403_and_keeps_session(portal):
    _, token, _ = registered(portal)
    portal.http.cookies.set(SESSION_COOKIE, token)
    portal.get_page("/")
    resp = portal.post_form("/signout", {})
    assert resp.status_code == 403, describe(resp)
    assert portal.get_json("/profile", headers=with_session(token)).status_code == 200


# --- settings: closed registration, https base URL ------------------------------------------------

HTTPS_BASE = "https://portal.example.test"  # as in conftest.closed_https_stack


def test_closed_registration_answers_registration_closed(closed_https_stack):
    portal = Portal(closed_https_stack.portal_url)
    page = portal.get_page("/register")
    assert page.status_code == 403 and "Registration is closed." in page.text, describe(page)
    resp = portal.post_json("/register", registration())
    assert resp.status_code == 403, describe(resp)
    assert error_body(resp)["error"] == "registration_closed"
    assert find_cookie(resp, SESSION_COOKIE) is None


def test_https_base_url_gives_host_prefixed_secure_cookies(closed_https_stack):
    portal = Portal(closed_https_stack.portal_url)
    page = portal.get_page("/signin")
    assert page.status_code == 200, describe(page)
    csrf = find_cookie(page, CSRF_COOKIE)
    assert csrf is not None, [c.raw for c in set_cookies(page)]
    assert csrf.name == "__Host-" + CSRF_COOKIE, csrf.raw
    assert csrf.has("secure") and csrf.attrs.get("path") == "/" and not csrf.has("domain"), csrf.raw
    assert Page(page.text).form("signin-form").value("csrf_token") == csrf.value

    resp = portal.post_json("/signin", {"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert resp.status_code == 200, describe(resp)
    c = find_cookie(resp, SESSION_COOKIE)
    assert c is not None and c.name == "__Host-" + SESSION_COOKIE, [s.raw for s in set_cookies(resp)]
    assert c.has("secure") and c.has("httponly"), c.raw
    assert c.attrs.get("samesite", "").lower() == "lax" and c.attrs.get("path") == "/", c.raw
    assert not c.has("domain"), c.raw

    prof = portal.get_json("/profile", headers={"Cookie": f"__Host-{SESSION_COOKIE}={c.value}"})
    assert prof.status_code == 200, describe(prof)
    assert prof.json()["email"] == ADMIN_EMAIL


def test_https_base_url_pins_browsers_to_https_and_http_does_not(closed_https_stack, portal):
    https = Portal(closed_https_stack.portal_url)
    for resp in [https.get_page("/signin"), https.post_json("/signin", {"login": "x@example.com", "password": "x"}),
                 https.get_json("/signout")]:
        hsts = resp.headers.get("Strict-Transport-Security", "")
        directives = [d.strip().lower() for d in hsts.split(";")]
        max_age = next((int(d.split("=", 1)[1]) for d in directives if d.startswith("max-age=")), 0)
        assert max_age >= 31536000 and "includesubdomains" in directives, describe(resp)
    for resp in [portal.get_page("/signin"), portal.get_json("/signout")]:
        assert "Strict-Transport-Security" not in resp.headers, describe(resp)


def test_https_base_url_checks_origin_against_it(closed_https_stack):
    portal = Portal(closed_https_stack.portal_url)
    ok = portal.post_json("/signin", {"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                          headers={"Origin": HTTPS_BASE})
    assert ok.status_code == 200, describe(ok)
    plain = portal.post_json("/signin", {"login": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                             headers={"Origin": closed_https_stack.portal_url})
    assert plain.status_code == 403, describe(plain)
