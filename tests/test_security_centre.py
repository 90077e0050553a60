"""The person's security centre end to end (issue 23): their sessions with where and how they
signed in, ending one or all others (the other browser is signed out on its next request), the
sign-in history of 90 days, the new-sign-in notice, and the page in Chromium."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import accessibility
from support import Portal, describe, emails_to, session_token, strong_password, unique_email, with_session
from test_browser import WAIT, browser, path, sign_in_through_the_page, submit_button  # noqa: F401

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
