"""The person's security centre end to end (issue 23): their sessions with where and how they
signed in, ending one or all others (the other browser is signed out on its next request), the
sign-in history of 90 days, the new-sign-in notice, and the page in Chromium."""

from __future__ import annotations

import json
import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import accessibility
from support import (
    Portal,
    await_emails,
    describe,
    emails_to,
    session_token,
    strong_password,
    unique_email,
    with_session,
)
from test_browser import WAIT, browser, fill, path, replaced, sign_in_through_the_page, submit_button  # noqa: F401
from test_invitations import admin  # noqa: F401 (the admin fixture)

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def person(base_url: str) -> tuple[str, str, str]:
    email, password = unique_email("security"), strong_password()
    _, resp = Portal(base_url).register(email=email, password=password)
    assert resp.status_code == 201, describe(resp)
    return email, password, session_token(resp)


def sign_in_as_firefox(base_url: str, email: str, password: str) -> str:
    client = Portal(base_url)
    client.http.headers["User-Agent"] = FIREFOX
    resp = client.signin(email, password)
    assert resp.status_code == 200, describe(resp)
    return session_token(resp)


def test_sessions_are_listed_with_their_origin_and_end_at_once(base_url):
    email, password, registered = person(base_url)
    firefox = sign_in_as_firefox(base_url, email, password)
    portal = Portal(base_url)
    listed = portal.get_json("/profile/sessions", headers=with_session(firefox))
    assert listed.status_code == 200, describe(listed)
    rows = listed.json()["sessions"]
    assert len(rows) == 2
    assert set(rows[0]) == {"session_id", "current", "created_at", "last_used_at", "expires_at", "remember_me",
                            "ip", "user_agent", "method"}
    mine = next(r for r in rows if r["current"])
    assert (mine["method"], mine["user_agent"], mine["ip"]) == ("password", "Firefox 133 on Linux", "127.0.0.1")
    other = next(r for r in rows if not r["current"])
    assert other["method"] == "registration"
    ended = portal.post_json(f"/profile/sessions/{other['session_id']}/revoke", {}, headers=with_session(firefox))
    assert ended.status_code == 204, describe(ended)
    assert portal.get_json("/profile", headers=with_session(registered)).status_code == 401
    assert portal.get_json("/profile", headers=with_session(firefox)).status_code == 200


def test_the_history_lists_this_accounts_sign_ins_and_the_owner_hears_of_a_new_browser(stack, base_url):
    email, password, _ = person(base_url)
    assert Portal(base_url).signin(email, "Not-The-Password-At-All-9").status_code == 401
    firefox = sign_in_as_firefox(base_url, email, password)
    history = Portal(base_url).get_json("/profile/sign-ins", headers=with_session(firefox))
    assert history.status_code == 200, describe(history)
    body = history.json()
    got = [(r["method"], r["result"]) for r in body["sign_ins"]]
    assert got == [("password", "success"), ("password", "wrong_credentials"), ("registration", "success")], body
    assert set(body) == {"sign_ins", "next_cursor"}
    assert set(body["sign_ins"][0]) == {"at", "method", "result", "ip", "user_agent"}
    stack.settle()
    notices = [m for m in emails_to(stack, email) if m["subject"] == "A new sign-in to your account"]
    assert notices and "Firefox 133 on Linux" in notices[-1]["body"], notices


def test_a_person_signs_out_another_browser_from_the_security_page(browser, base_url):  # noqa: F811
    email, password, _ = person(base_url)
    other = sign_in_as_firefox(base_url, email, password)
    sign_in_through_the_page(browser, base_url, email, password)
    browser.get(base_url + "/profile")
    browser.find_element(By.ID, "security-link").click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/profile/security")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sessions .session")
    assert len(rows) == 3, [r.text for r in rows]
    firefox_row = next(r for r in rows if "Firefox 133 on Linux" in r.text)
    firefox_row.find_element(By.TAG_NAME, "summary").click()
    submit_button(firefox_row.find_element(By.TAG_NAME, "form")).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions .session")) == 2)
    assert "this browser" in browser.find_element(By.ID, "sessions").text
    assert Portal(base_url).get_json("/profile", headers=with_session(other)).status_code == 401
    assert browser.find_elements(By.CSS_SELECTOR, "#sign-ins tbody tr")
    assert accessibility.audit(browser) == []


# --- the terms of use ------------------------------------------------------------------------------

from conftest import stack_fixture  # noqa: E402

terms_stack = stack_fixture(
    "terms_stack", "terms", {"PORTAL_TERMS_VERSION": "2026-12", "PORTAL_TERMS_URL": "https://example.com/terms"},
    doc="A stack whose site has terms of use to accept.")


def test_terms_limit_the_session_to_the_terms_until_accepted(terms_stack):
    base = terms_stack.portal_url
    email, password = unique_email("terms"), strong_password()
    portal = Portal(base)
    _, resp = portal.register(email=email, password=password)
    assert resp.status_code == 201, describe(resp)
    session = session_token(resp)
    refused = portal.get_json("/profile", headers=with_session(session))
    assert refused.status_code == 403 and refused.json()["terms_required"] is True, describe(refused)
    terms = portal.get_json("/terms", headers=with_session(session)).json()
    assert terms == {"version": "2026-12", "url": "https://example.com/terms", "accepted": False,
                     "accepted_at": None}
    accepted = portal.post_json("/terms", {"accept": True}, headers=with_session(session))
    assert accepted.status_code == 200, describe(accepted)
    session = session_token(accepted)
    assert portal.get_json("/profile", headers=with_session(session)).status_code == 200
    signed_in = Portal(base).signin(email, password)
    assert signed_in.status_code == 200 and "terms_required" not in signed_in.json(), describe(signed_in)


def test_the_export_is_a_json_attachment_of_what_is_stored_about_the_person(base_url):
    email, password, session = person(base_url)
    portal = Portal(base_url)
    wrong = portal.post_json("/profile/export", {"current_password": "Not-The-Password-At-All-9"},
                             headers=with_session(session))
    assert wrong.status_code == 400 and "current_password" in wrong.json()["fields"], describe(wrong)
    exported = portal.post_json("/profile/export", {"current_password": password}, headers=with_session(session))
    assert exported.status_code == 200, describe(exported)
    assert exported.headers["Content-Disposition"].startswith("attachment")
    body = exported.json()
    assert body["profile"]["email"] == email
    assert {"profile", "roles", "account_id", "terms_accepted", "sessions", "sign_ins", "two_factor", "passkeys",
            "identities", "invitations", "audit"} <= set(body)
    assert [s["result"] for s in body["sign_ins"]] == ["success"]
    assert password not in exported.text and session not in exported.text


def every_item(stack) -> list[tuple[str, str]]:
    """Every item of every table of the stack, as (table, JSON text), through the real DynamoDB
    API (Scan) of the local endpoint."""
    import boto3

    ddb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint, region_name=stack.env["AWS_REGION"],
                       aws_access_key_id="test", aws_secret_access_key="test")
    found = []
    for table in stack.tables.values():
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            found += [(table, json.dumps(item)) for item in page["Items"]]
    return found


def test_deleting_the_account_leaves_nothing_in_any_table_that_names_the_person(stack, base_url, admin):  # noqa: F811
    """After deletion (and the erasure job and the notice it causes), a scan of every table finds
    the person's address, name and phone nowhere: not on the tombstone, a session, a token, an
    invitation, an outbox message or an allowance; the address registers again."""
    email, password = unique_email("erase"), strong_password()
    tag = uuid.uuid4().hex[:10]
    first, last, phone = f"Erin{tag}", f"Forgotten{tag}", f"+44 20 7946 {int(tag[:6], 16) % 10000:04d}"
    portal = Portal(base_url)
    _, resp = portal.register(email=email, password=password, first_name=first, last_name=last, phone=phone)
    assert resp.status_code == 201, describe(resp)
    contact_id = resp.json()["contact_id"]
    session = session_token(resp)
    other = sign_in_as_firefox(base_url, email, password)
    assert Portal(base_url).post_json("/forgot-password", {"email": email}).status_code == 202
    invited = admin.post_json("/admin/invitations", {"contact_id": contact_id})
    assert invited.status_code == 201, describe(invited)
    stack.settle()
    before = " ".join(text for _, text in every_item(stack))
    for person_text in (email, first, last, phone):
        assert person_text in before, f"the scan sees {person_text!r} before the deletion"

    wrong = portal.post_json("/profile/delete", {"current_password": "Not-The-Password-At-All-9"},
                             headers=with_session(session))
    assert wrong.status_code == 400 and "current_password" in wrong.json()["fields"], describe(wrong)
    deleted = portal.post_json("/profile/delete", {"current_password": password}, headers=with_session(session))
    assert deleted.status_code == 202, describe(deleted)
    assert deleted.json()["contact_id"] == contact_id and deleted.json()["deleted_at"]
    assert portal.get_json("/profile", headers=with_session(other)).status_code == 401, "every session ended"
    assert Portal(base_url).signin(email, password).status_code == 401
    stack.settle()

    for person_text in (email, first, last, phone):
        left = [(table, text) for table, text in every_item(stack) if person_text.lower() in text.lower()]
        assert not left, f"{person_text!r} is still stored: {left}"
    notices = [m for m in emails_to(stack, email) if m["subject"] == "Your account was deleted"]
    assert len(notices) == 1, notices
    trail = admin.get_json(f"/admin/audit?contact_id={contact_id}").json()["entries"]
    assert {"account_deleted", "account_erased"} <= {e["kind"] for e in trail}
    shown = admin.get_json(f"/admin/contacts/{contact_id}").json()
    assert shown["deleted_at"] and shown["email"] == "" and shown["login_enabled"] is False, shown
    again = Portal(base_url).register(email=email, password=strong_password())[1]
    assert again.status_code == 201 and again.json()["contact_id"] != contact_id, describe(again)


# --- signing in with an emailed code (issue 21) -----------------------------------------------------

CODE_SUBJECT = "Your sign-in code"


def emailed_code(stack, email: str, count: int = 1) -> str:
    body = await_emails(stack, email, CODE_SUBJECT, count)[-1]["body"]
    return next(w for w in body.split() if len(w) == 6 and w.isdigit())


def test_an_emailed_code_signs_in_once_and_the_request_tells_nothing(stack, base_url):
    email, _, _ = person(base_url)
    portal = Portal(base_url)
    asked = portal.post_json("/signin/email-code", {"email": email})
    nobody = portal.post_json("/signin/email-code", {"email": unique_email("nobody")})
    assert (asked.status_code, nobody.status_code) == (202, 202), describe(asked)
    assert asked.json() == nobody.json() == {"status": "email_sent"}
    code = emailed_code(stack, email)
    wrong = portal.post_json("/signin/email-code/verify", {"email": email, "code": "12345x"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials", describe(wrong)
    signed_in = portal.post_json("/signin/email-code/verify", {"email": email, "code": code})
    assert signed_in.status_code == 200, describe(signed_in)
    session = session_token(signed_in)
    history = portal.get_json("/profile/sign-ins", headers=with_session(session)).json()["sign_ins"]
    assert (history[0]["method"], history[0]["result"]) == ("email_code", "success"), history
    again = portal.post_json("/signin/email-code/verify", {"email": email, "code": code})
    assert again.status_code == 401, "a code works once"


def test_a_person_signs_in_with_an_emailed_code_in_the_browser(stack, browser, base_url):  # noqa: F811
    email, _, _ = person(base_url)
    browser.get(base_url + "/signin")
    browser.find_element(By.ID, "email-code-link").click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/signin/email-code")
    form = browser.find_element(By.ID, "email-code-request-form")
    fill(form, email=email)
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "email-code-verify-form"))
    assert accessibility.audit(browser) == []
    form = browser.find_element(By.ID, "email-code-verify-form")
    fill(form, code=emailed_code(stack, email))
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(replaced(form))
    browser.get(base_url + "/profile")
    assert path(browser) == "/profile" and email in browser.page_source


# --- site settings at run time (issue 24) -----------------------------------------------------------

def test_registration_closed_at_run_time_answers_registration_closed_at_once(base_url, admin):  # noqa: F811
    """The test stacks read the run-time settings every second (AWS: every minute)."""
    import time

    def register_status() -> tuple[int, dict]:
        _, resp = Portal(base_url).register(email=unique_email("closed"), password=strong_password())
        return resp.status_code, resp.json()

    try:
        changed = admin.post_json("/admin/settings", {"open_registration": False})
        assert changed.status_code == 200, describe(changed)
        assert next(s for s in changed.json()["settings"] if s["name"] == "open_registration")["source"] == "run_time"
        deadline = time.monotonic() + 15
        while (answer := register_status())[0] != 403 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert answer == (403, {"error": "registration_closed", "message": "Registration is closed."}), answer
    finally:
        reopened = admin.post_json("/admin/settings", {"open_registration": ""})
        assert reopened.status_code == 200, describe(reopened)
        time.sleep(1.5)
