"""Staff administer accounts, end to end over HTTP (JSON) against the running local stack (issue 22):
a contact's account as staff see it (state, factors, latest audit entries), the staff actions on
it (disable and enable, unlock, sign out everywhere, password and two-factor resets, roles), the
audit trail that records them and every sign-in, filtered and paged, and account administrators,
who may act only on the contacts of their own account."""

from __future__ import annotations

import json
import time
import uuid

from support import (
    EMAIL_WAIT,
    Portal,
    describe,
    emails_to,
    session_token,
    strong_password,
    unique_email,
    with_session,
)
from test_invitations import admin, create_contact, parse_time  # noqa: F401 (the admin fixture)
from test_self_service import RESET_SUBJECT, assert_error, profile_json, sign_in, token_of
from test_two_factor import pending_sign_in, set_up_totp

CONTACT_FIELDS = {"contact_id", "email", "first_name", "last_name", "username", "roles",
                  "account_id", "email_confirmed", "portal_user"}
ACCOUNT_FIELDS = {"login_enabled", "locked_until", "two_factor", "passkeys", "identities",
                  "last_sign_in_at", "deleted_at", "audit"}
ENTRY_FIELDS = {"entry_id", "at", "kind", "actor_id", "contact_id", "ip", "detail"}

# Each staff action, its body, its answer's status and the kind of its audit entry, in the order
# test_every_staff_action_is_audited_with_its_actor performs them.
STAFF_ACTIONS = [
    ("disable", {}, 200, "account_disabled"),
    ("enable", {}, 200, "account_enabled"),
    ("unlock", {}, 200, "account_unlocked"),
    ("sign-out-everywhere", {}, 204, "signed_out_everywhere"),
    ("reset-password", {}, 202, "password_reset_by_staff"),
    ("reset-two-factor", {}, 200, "two_factor_reset"),
    ("roles", {"roles": ["Customers"], "account_id": "acct-audit"}, 200, "roles_changed"),
]

NO_FACTORS = {"totp": False, "email": False, "recovery_codes_left": 0}


# --- helpers --------------------------------------------------------------------------------------

def person(base_url: str) -> tuple[dict, str, str]:
    """A newly registered person: (registration body, contact id, session token)."""
    body, resp = Portal(base_url).register()
    assert resp.status_code == 201, describe(resp)
    return body, resp.json()["contact_id"], session_token(resp)


def signed_in(base_url: str, login: str, password: str) -> str:
    """A fresh session of a person whose sign-in needs no second factor."""
    resp = sign_in(base_url, login, password)
    assert resp.status_code == 200, describe(resp)
    assert "status" not in resp.json(), resp.json()
    return session_token(resp)


def contact_id_of(client: Portal, headers: dict | None = None) -> str:
    resp = client.get_json("/profile", headers=headers)
    assert resp.status_code == 200, describe(resp)
    return resp.json()["contact_id"]


def view(client: Portal, contact_id: str, headers: dict | None = None) -> dict:
    """`GET /admin/contacts/{id}`, answered 200."""
    resp = client.get_json(f"/admin/contacts/{contact_id}", headers=headers)
    assert resp.status_code == 200, describe(resp)
    contact = resp.json()
    assert contact["contact_id"] == contact_id, contact
    return contact


def act(client: Portal, contact_id: str, action: str, body: dict | None = None,
        status: int = 200, headers: dict | None = None):
    """`POST /admin/contacts/{id}/{action}`; the contact it answers (for a 200), else the response."""
    resp = client.post_json(f"/admin/contacts/{contact_id}/{action}", {} if body is None else body,
                            headers=headers)
    assert resp.status_code == status, describe(resp)
    if status != 200:
        return resp
    contact = resp.json()
    assert contact["contact_id"] == contact_id and ACCOUNT_FIELDS - {"audit"} <= set(contact), contact
    return contact


def assert_entries(entries: list[dict]) -> None:
    """Audit entries of the contract's shape, newest first."""
    for entry in entries:
        assert ENTRY_FIELDS <= set(entry), entry
        assert isinstance(entry["entry_id"], str) and entry["entry_id"], entry
        assert isinstance(entry["kind"], str) and entry["kind"], entry
    times = [parse_time(entry["at"]) for entry in entries]
    assert times == sorted(times, reverse=True), f"not newest first: {[e['at'] for e in entries]}"


def audit(client: Portal, query: str = "") -> dict:
    """`GET /admin/audit?<query>`, answered 200."""
    resp = client.get_json("/admin/audit" + (f"?{query}" if query else ""))
    assert resp.status_code == 200, describe(resp)
    body = resp.json()
    assert isinstance(body["entries"], list) and "next_cursor" in body, body
    assert_entries(body["entries"])
    return body


def await_new_email(stack, address: str, before: int) -> dict:
    """Waits for an email to `address` beyond the `before` ones it had; returns the newest."""
    deadline = time.monotonic() + EMAIL_WAIT
    while True:
        found = emails_to(stack, address)
        if len(found) > before:
            return found[-1]
        assert time.monotonic() < deadline, f"no new email to {address} within {EMAIL_WAIT}s"
        time.sleep(0.1)


# --- the contact's account as staff see it -------------------------------------------------------

def test_the_contact_view_shows_the_account_state_its_factors_and_latest_audit(base_url, admin):
    body, cid, _ = person(base_url)
    signed_in(base_url, body["email"], body["password"])

    contact = view(admin, cid)
    assert CONTACT_FIELDS | ACCOUNT_FIELDS <= set(contact), sorted(contact)
    assert (contact["email"], contact["first_name"], contact["last_name"]) == (
        body["email"], "Ada", "Lovelace")
    assert contact["login_enabled"] is True
    assert contact["locked_until"] is None and contact["deleted_at"] is None
    assert contact["two_factor"] == NO_FACTORS
    assert (contact["passkeys"], contact["identities"]) == (0, [])
    assert isinstance(contact["last_sign_in_at"], str), contact
    parse_time(contact["last_sign_in_at"])
    entries = contact["audit"]
    assert 1 <= len(entries) <= 50, entries
    assert_entries(entries)
    assert all(e["contact_id"] == cid for e in entries), entries
    assert "signed_in" in [e["kind"] for e in entries], entries


def test_only_administrators_see_and_act_on_accounts(base_url, admin):
    _, cid, session = person(base_url)
    calls = [
        ("GET", f"/admin/contacts/{cid}", None),
        ("POST", f"/admin/contacts/{cid}/disable", {}),
        ("POST", f"/admin/contacts/{cid}/roles", {"roles": ["Administrators"], "account_id": None}),
        ("GET", f"/admin/audit?contact_id={cid}", None),
    ]
    for method, path, body in calls:
        for headers, status, error in ((with_session(session), 403, "forbidden"),
                                       ({}, 401, "unauthenticated")):
            customer = Portal(base_url)  # an empty cookie jar each time
            if method == "GET":
                resp = customer.get_json(path, headers=headers)
            else:
                resp = customer.post_json(path, body, headers=headers)
            assert_error(resp, status, error)
    me = profile_json(base_url, session)
    assert me.status_code == 200 and "Administrators" not in me.json()["roles"], describe(me)

    unknown = str(uuid.uuid4())
    assert_error(admin.get_json(f"/admin/contacts/{unknown}"), 404, "not_found")
    assert_error(admin.post_json(f"/admin/contacts/{unknown}/disable", {}), 404, "not_found")
    assert_error(admin.post_json(f"/admin/contacts/{cid}/frobnicate", {}), 404, "not_found")
    assert view(admin, cid)["login_enabled"] is True, "nothing changed"


# --- the staff actions ---------------------------------------------------------------------------

def test_disabling_ends_the_sessions_and_refuses_sign_in_until_enabled(base_url, admin):
    body, cid, session = person(base_url)
    disabled = act(admin, cid, "disable")
    assert disabled["login_enabled"] is False
    assert_error(profile_json(base_url, session), 401, "unauthenticated")
    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    assert view(admin, cid)["login_enabled"] is False

    enabled = act(admin, cid, "enable")
    assert enabled["login_enabled"] is True
    assert_error(profile_json(base_url, session), 401, "unauthenticated")  # ended stays ended
    again = signed_in(base_url, body["email"], body["password"])
    assert profile_json(base_url, again).status_code == 200


def test_signing_out_everywhere_ends_every_session_of_the_person(base_url, admin):
    body, cid, first = person(base_url)
    second = signed_in(base_url, body["email"], body["password"])
    resp = act(admin, cid, "sign-out-everywhere", status=204)
    assert not resp.content, describe(resp)
    for session in (first, second):
        assert_error(profile_json(base_url, session), 401, "unauthenticated")
    again = signed_in(base_url, body["email"], body["password"])
    assert profile_json(base_url, again).status_code == 200
    assert view(admin, cid)["login_enabled"] is True, "signed out, not disabled"


def test_unlocking_lets_the_right_password_in_again(stack, base_url, admin):
    threshold = int(stack.env.get("PORTAL_LOCKOUT_THRESHOLD", "5"))
    body, cid, _ = person(base_url)
    for _ in range(threshold):
        assert_error(sign_in(base_url, body["email"], "Wrong-Guess-Walrus-Orbit-1"), 401,
                     "invalid_credentials")
    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    locked = view(admin, cid)["locked_until"]
    assert isinstance(locked, str), locked
    parse_time(locked)

    unlocked = act(admin, cid, "unlock")
    assert unlocked["locked_until"] is None, unlocked
    signed_in(base_url, body["email"], body["password"])


def test_a_staff_password_reset_emails_a_link_and_can_block_the_current_password(stack, base_url,
                                                                                admin):
    body, cid, _ = person(base_url)
    act(admin, cid, "reset-password", status=202)
    token_of(stack, body["email"], RESET_SUBJECT, "/reset-password")
    signed_in(base_url, body["email"], body["password"])  # not blocked: the password still works

    act(admin, cid, "reset-password", {"block_current_password": True}, status=202)
    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    token = token_of(stack, body["email"], RESET_SUBJECT, "/reset-password", count=2)
    new_password = strong_password()
    reset = Portal(base_url).post_json("/reset-password", {"token": token, "new_password": new_password})
    assert reset.status_code == 204, describe(reset)
    assert_error(sign_in(base_url, body["email"], body["password"]), 401, "invalid_credentials")
    signed_in(base_url, body["email"], new_password)


def test_a_two_factor_reset_removes_the_factors_and_tells_the_person(stack, base_url, admin):
    body, cid, session = person(base_url)
    set_up_totp(Portal(base_url), session, body["password"])
    assert view(admin, cid)["two_factor"] == {"totp": True, "email": False, "recovery_codes_left": 10}
    pending_sign_in(Portal(base_url), body["email"], body["password"])
    stack.settle()  # the set-up's notice is out: any later email is the reset's
    before = len(emails_to(stack, body["email"]))

    reset = act(admin, cid, "reset-two-factor")
    assert (reset["two_factor"], reset["passkeys"]) == (NO_FACTORS, 0), reset
    await_new_email(stack, body["email"], before)
    session = signed_in(base_url, body["email"], body["password"])
    assert profile_json(base_url, session).status_code == 200


# --- the audit trail ------------------------------------------------------------------------------

def test_every_staff_action_is_audited_with_its_actor(base_url, admin):
    admin_id = contact_id_of(admin)
    _, cid, _ = person(base_url)
    for action, body, status, _ in STAFF_ACTIONS:
        answer = act(admin, cid, action, body, status)
    assert (answer["roles"], answer["account_id"]) == (["Customers"], "acct-audit"), answer

    entries = audit(admin, f"contact_id={cid}&limit=50")["entries"]
    assert all(e["contact_id"] == cid for e in entries), entries
    kinds = [kind for *_, kind in STAFF_ACTIONS]
    staff = [e for e in entries if e["kind"] in kinds]
    assert [e["kind"] for e in staff] == kinds[::-1], "each action once, newest first"
    for entry in staff:
        assert (entry["actor_id"], entry["ip"]) == (admin_id, "127.0.0.1"), entry
    staff_ids = [e["entry_id"] for e in staff]
    in_view = [e["entry_id"] for e in view(admin, cid)["audit"] if e["kind"] in kinds]
    assert in_view == staff_ids, "the contact view shows the same latest entries"

    # Pages of two continue from their cursor, without repeats, to the whole list.
    paged, cursor = [], None
    while True:
        page = audit(admin, f"contact_id={cid}&limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert len(page["entries"]) <= 2
        paged += [e["entry_id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(paged) <= len(entries), "the cursor went round"
    assert paged == [e["entry_id"] for e in entries]
    resp = admin.get_json(f"/admin/audit?contact_id={cid}&cursor=bm90LWEtY3Vyc29y")
    assert_error(resp, 400, "validation_failed")

    by_admin = audit(admin, f"actor_id={admin_id}&limit=50")["entries"]
    assert all(e["actor_id"] == admin_id for e in by_admin), by_admin
    assert set(staff_ids) <= {e["entry_id"] for e in by_admin}
    disabled = audit(admin, "kind=account_disabled&limit=50")["entries"]
    assert all(e["kind"] == "account_disabled" for e in disabled), disabled
    assert disabled[0]["entry_id"] == staff[-1]["entry_id"], "the newest disable is this one"


def test_sign_ins_are_audited_and_an_unknown_login_is_not_recorded(base_url, admin):
    body, cid, _ = person(base_url)
    signed_in(base_url, body["email"], body["password"])
    assert_error(sign_in(base_url, body["email"], "Wrong-Guess-Walrus-Orbit-1"), 401,
                 "invalid_credentials")
    nobody = unique_email("nobody")
    assert_error(sign_in(base_url, nobody, body["password"]), 401, "invalid_credentials")

    entries = audit(admin, f"contact_id={cid}&limit=50")["entries"]
    kinds = [e["kind"] for e in entries]
    assert "signed_in" in kinds and "sign_in_failed" in kinds, kinds
    assert kinds.index("sign_in_failed") < kinds.index("signed_in"), "newest first"
    failed = entries[kinds.index("sign_in_failed")]

    recent = audit(admin, "limit=50")["entries"]
    failures = audit(admin, "kind=sign_in_failed&limit=50")["entries"]
    assert failed["entry_id"] in {e["entry_id"] for e in failures}, "the page covers the attempts"
    for entry in recent + failures:
        assert nobody not in json.dumps(entry).lower(), f"the typed login was recorded: {entry}"


# --- account administrators ----------------------------------------------------------------------

def test_account_administrators_act_only_within_their_own_account(stack, base_url, admin):
    role = stack.env.get("PORTAL_ACCOUNT_ADMIN_ROLE", "Account Administrators")
    acct_x, acct_y = f"acct-{uuid.uuid4().hex[:8]}", f"acct-{uuid.uuid4().hex[:8]}"
    body, a_id, _ = person(base_url)
    granted = act(admin, a_id, "roles", {"roles": [role], "account_id": acct_x})
    assert (granted["roles"], granted["account_id"]) == ([role], acct_x), granted
    b, c = create_contact(admin), create_contact(admin)
    for contact, account in ((b, acct_x), (c, acct_y)):
        moved = act(admin, contact["contact_id"], "roles", {"roles": ["Customers"], "account_id": account})
        assert (moved["roles"], moved["account_id"]) == (["Customers"], account), moved
    b_id, c_id = b["contact_id"], c["contact_id"]
    c_before = view(admin, c_id)

    resp = sign_in(base_url, body["email"], body["password"])
    assert resp.status_code == 200 and role in resp.json()["roles"], describe(resp)
    a = with_session(session_token(resp))
    client = Portal(base_url)

    assert view(client, b_id, headers=a)["account_id"] == acct_x
    assert_error(client.get_json(f"/admin/contacts/{c_id}", headers=a), 404, "not_found")
    listed = lambda email: [x["contact_id"] for x in client.get_json(  # noqa: E731
        f"/admin/contacts?q={email}", headers=a).json()["contacts"]]
    assert listed(b["email"]) == [b_id] and listed(c["email"]) == []

    assert act(client, b_id, "disable", headers=a)["login_enabled"] is False
    assert_error(client.post_json(f"/admin/contacts/{c_id}/disable", {}, headers=a), 404, "not_found")
    assert view(admin, c_id)["login_enabled"] == c_before["login_enabled"], "C unchanged"
    assert_error(client.post_json(f"/admin/contacts/{b_id}/roles",
                                  {"roles": [role], "account_id": acct_x}, headers=a), 403, "forbidden")
    assert view(admin, b_id)["roles"] == ["Customers"]
    assert_error(client.get_json("/admin/audit", headers=a), 403, "forbidden")

    invitee = {"first_name": "Grace", "last_name": "Hopper"}
    ok = client.post_json("/admin/invitations", dict(invitee, email=unique_email("acct"),
                                                     account_id=acct_x), headers=a)
    assert ok.status_code == 201, describe(ok)
    for refused in ({"account_id": acct_y}, {"account_id": acct_x, "roles": ["Administrators"]}):
        resp = client.post_json("/admin/invitations", dict(invitee, email=unique_email("acct"),
                                                           **refused), headers=a)
        assert_error(resp, 403, "forbidden")


# --- the operators' command line ---------------------------------------------------------------

def test_operators_take_the_same_actions_from_the_command_line_and_are_audited(stack, base_url, admin):
    from test_faults import portal_admin

    body, cid, session = person(base_url)
    out = portal_admin(stack, "account", "disable", "--contact", body["email"])
    assert "disable: done" in out and "sign-in disabled" in out, out
    assert sign_in(base_url, body["email"], body["password"]).status_code == 401
    out = portal_admin(stack, "account", "roles", "--roles", "Customers,Partners", "--account-id", "acct-cli",
                       "--contact", cid)
    assert "roles [Customers, Partners]" in out and "account acct-cli" in out, out
    portal_admin(stack, "account", "enable", "--contact", cid)
    assert sign_in(base_url, body["email"], body["password"]).status_code == 200

    listed = portal_admin(stack, "audit", "--contact", cid, "--limit", "10")
    lines = listed.splitlines()
    kinds = [line.split()[1] for line in lines]
    assert kinds[:5] == ["signed_in", "account_enabled", "roles_changed", "sign_in_failed", "account_disabled"], listed
    operator_lines = [line for line in lines if line.split()[1] in {"account_enabled", "roles_changed",
                                                                    "account_disabled"}]
    assert len(operator_lines) == 3 and all("actor=- " in line and "by=operator" in line for line in operator_lines)
    entries = admin.get_json(f"/admin/audit?contact_id={cid}&kind=account_disabled").json()["entries"]
    assert entries[0]["actor_id"] is None and entries[0]["detail"] == {"by": "operator"}, entries
