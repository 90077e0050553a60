"""Invitations end to end over HTTP against the running local stack: an administrator creates a
contact and an invitation, the code travels only by email (the outbox stream relayed to send-email,
recorded by moto's SES), and the contact redeems it; resend, revoke, existing accounts, group
invitations, the redemption races, and one answer for every bad code."""

from __future__ import annotations

import datetime
import json
import re
import threading
import time

import boto3
import pytest

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    INVITATION_SENDER,
    INVITATION_SUBJECT,
    Page,
    Portal,
    await_emails,
    describe,
    emailed_invitation_code,
    emails_to,
    error_body,
    invoke_function,
    outbox_stream_records,
    path_of,
    session_token,
    strong_password,
    unique_email,
    unique_username,
    with_session,
)

RELAY_WAIT = 30  # seconds; the relay polls every 0.5 s, an email normally arrives within 2 s


# --- helpers --------------------------------------------------------------------------------------

class Admin(Portal):
    """The administrator's JSON client; remembers every response body it got, to check that no
    admin response ever shows an invitation code."""

    def __init__(self, base_url: str):
        super().__init__(base_url)
        self.seen: list[str] = []

    def request(self, method, path, **kw):
        resp = super().request(method, path, **kw)
        self.seen.append(f"{method} {path}: {resp.text}")
        return resp


@pytest.fixture
def admin(base_url) -> Admin:
    a = Admin(base_url)
    resp = a.signin(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert resp.status_code == 200, describe(resp)
    assert "Administrators" in resp.json()["roles"]
    return a


def create_contact(admin: Admin, **overrides) -> dict:
    body = {"email": unique_email("invitee"), "first_name": "Grace", "last_name": "Hopper"}
    body.update(overrides)
    resp = admin.post_json("/admin/contacts", body)
    assert resp.status_code == 201, describe(resp)
    contact = resp.json()
    assert contact["email"] == body["email"]
    assert isinstance(contact["contact_id"], str) and contact["contact_id"]
    return contact


def invite(admin: Admin, **body) -> dict:
    resp = admin.post_json("/admin/invitations", body)
    assert resp.status_code == 201, describe(resp)
    invitation = resp.json()
    for key in ("invitation_id", "contact_id", "type", "status", "expires_at", "max_redemptions",
                "redemptions", "delivery"):
        assert key in invitation, f"{key} missing from {invitation}"
    assert invitation["status"] == "active"
    assert invitation["redemptions"] == 0
    assert invitation["delivery"] in ("pending", "sent"), invitation
    return invitation


def invitation_emails(stack, address: str, count: int = 1) -> list[dict]:
    return await_emails(stack, address, INVITATION_SUBJECT, count=count, timeout=RELAY_WAIT)


def emailed_code(stack, address: str, count: int = 1) -> str:
    """The code of the `count`-th invitation email to `address` (waiting for it)."""
    email = invitation_emails(stack, address, count)[count - 1]
    assert email["from"] == INVITATION_SENDER, email
    assert email["to"] == [address], email
    return emailed_invitation_code(email, stack.portal_url)


def invited(stack, admin: Admin, **body) -> tuple[dict, dict, str]:
    """A new contact with an invitation whose email arrived: (contact, invitation, code)."""
    contact = create_contact(admin)
    invitation = invite(admin, contact_id=contact["contact_id"], **body)
    return contact, invitation, emailed_code(stack, contact["email"])


def get_invitation(admin: Admin, invitation_id: str) -> dict:
    resp = admin.get_json(f"/admin/invitations/{invitation_id}")
    assert resp.status_code == 200, describe(resp)
    return resp.json()


def admin_contact(admin: Admin, contact_id: str, email: str) -> dict:
    """The contact as the administrator's search for its email lists it."""
    resp = admin.get_json(f"/admin/contacts?q={email}&contact_id={contact_id}")
    assert resp.status_code == 200, describe(resp)
    found = [c for c in resp.json()["contacts"] if c["contact_id"] == contact_id]
    assert len(found) == 1, f"contact {contact_id} not listed: {resp.text[:500]}"
    return found[0]


def await_delivery(admin: Admin, invitation_id: str, state: str = "sent") -> dict:
    deadline = time.monotonic() + RELAY_WAIT
    while True:
        invitation = get_invitation(admin, invitation_id)
        if invitation["delivery"] == state or time.monotonic() > deadline:
            assert invitation["delivery"] == state, invitation
            return invitation
        time.sleep(0.3)


def code_forms(code: str) -> list[str]:
    bare = code.replace("-", "")
    return [code, bare, code.lower(), bare.lower()]


def assert_no_code_in(texts: list[str], code: str) -> None:
    for text in texts:
        for form in code_forms(code):
            assert form not in text, f"an admin response shows the code: {text[:300]}"


def assert_invitation_invalid(resp) -> dict:
    assert resp.status_code == 400, describe(resp)
    body = error_body(resp)
    assert body["error"] == "invitation_invalid", body
    return body


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def outbox_table(stack):
    return boto3.resource(
        "dynamodb", endpoint_url=stack.aws_endpoint, region_name=stack.env["AWS_REGION"],
        aws_access_key_id="test", aws_secret_access_key="test",
    ).Table(stack.tables["OutboxTable"])


def outbox_insert_of(stack, invitation_id: str) -> list[dict]:
    return [r for r in outbox_stream_records(stack)
            if r["eventName"] == "INSERT"
            and r["dynamodb"]["NewImage"].get("invitation_id") == {"S": invitation_id}]


# --- the whole journey ----------------------------------------------------------------------------

def test_admin_invites_a_contact_who_redeems_signs_out_and_signs_in_again(stack, admin, portal):
    contact = create_contact(admin, first_name="Grace", last_name="Hopper",
                             phone="+1 202 555 0143")
    assert contact["email_confirmed"] is False
    listed = admin.get_json("/admin/contacts?q=" + contact["email"])
    assert listed.status_code == 200, describe(listed)
    assert [c["contact_id"] for c in listed.json()["contacts"]] == [contact["contact_id"]]

    invitation = invite(admin, contact_id=contact["contact_id"], roles=["Customers", "Partners"],
                        account_id="contoso-001", expires_in_days=3)
    assert invitation["contact_id"] == contact["contact_id"]
    assert invitation["type"] == "single"
    assert invitation["max_redemptions"] == 1
    expires, created = parse_time(invitation["expires_at"]), parse_time(invitation["created_at"])
    assert expires - created == datetime.timedelta(days=3)

    # The code reaches the contact by email only.
    email = invitation_emails(stack, contact["email"])[0]
    assert email["from"] == INVITATION_SENDER
    assert email["to"] == [contact["email"]]
    assert email["subject"] == INVITATION_SUBJECT
    assert "Grace" in email["body"]
    code = emailed_invitation_code(email, stack.portal_url)

    # Opening the link (as a mail scanner would, twice) consumes nothing.
    for _ in range(2):
        page = portal.get_page("/redeem?code=" + code)
        assert page.status_code == 200, describe(page)
        html = Page(page.text)
        assert "Grace Hopper" in html.ids.get("invitation-for", ""), html.ids
        form = html.form("redeem-form")
        assert form.value("code").replace("-", "") == code.replace("-", "")
        assert {"csrf_token", "code", "existing_account", "login", "username",
                "password"} <= form.field_names()
        assert not {"email", "first_name", "last_name"} & form.field_names(), "single: no names"
    lookup = portal.post_json("/redeem", {"code": code})
    assert lookup.status_code == 200, describe(lookup)
    assert lookup.json() == {"invitation_id": invitation["invitation_id"], "type": "single",
                             "email": contact["email"], "first_name": "Grace",
                             "last_name": "Hopper"}
    assert session_token_or_none(lookup) is None, "a lookup starts no session"
    still = get_invitation(admin, invitation["invitation_id"])
    assert (still["status"], still["redemptions"], still["redeemed_by"]) == ("active", 0, [])

    # The contact chooses credentials: a portal user, signed in, roles and account assigned.
    password, username = strong_password(), unique_username("grace")
    resp = portal.post_json("/redeem", {"code": code, "password": password, "username": username})
    assert resp.status_code == 201, describe(resp)
    redeemed = resp.json()
    assert redeemed["invitation_id"] == invitation["invitation_id"]
    assert redeemed["contact_id"] == contact["contact_id"]
    assert redeemed["email"] == contact["email"]
    assert sorted(redeemed["roles"]) == ["Customers", "Partners"]
    assert redeemed["redirect_path"] == "/profile"
    token = session_token(resp)
    profile = portal.get_json("/profile", headers=with_session(token))
    assert profile.status_code == 200, describe(profile)
    p = profile.json()
    assert p["contact_id"] == contact["contact_id"]
    assert p["username"] == username
    assert sorted(p["roles"]) == ["Customers", "Partners"]
    assert p["email_confirmed"] is True, "the code reached the address: it is confirmed"
    assert "Administrators" not in p["roles"]

    # The administrator sees the delivery and who redeemed it from where.
    seen = await_delivery(admin, invitation["invitation_id"], "sent")
    assert seen["status"] == "redeemed"
    assert seen["redemptions"] == 1
    assert len(seen["redeemed_by"]) == 1
    by = seen["redeemed_by"][0]
    assert by["contact_id"] == contact["contact_id"]
    assert by["source_ip"] == "127.0.0.1"
    assert abs(parse_time(by["redeemed_at"]) - datetime.datetime.now(datetime.timezone.utc)) < \
        datetime.timedelta(minutes=5)
    updated = admin_contact(admin, contact["contact_id"], contact["email"])
    assert updated["account_id"] == "contoso-001"
    assert updated["portal_user"] is True
    assert updated["email_confirmed"] is True

    # The code is used up.
    assert_invitation_invalid(Portal(stack.portal_url).post_json("/redeem", {"code": code}))

    # Sign out, then in again with the new password (by email and by username).
    out = portal.post_json("/signout", {}, headers=with_session(token))
    assert out.status_code == 204, describe(out)
    assert portal.get_json("/profile", headers=with_session(token)).status_code == 401
    for login in (contact["email"], username.upper()):
        again = Portal(stack.portal_url).signin(login, password)
        assert again.status_code == 200, describe(again)
        assert again.json()["contact_id"] == contact["contact_id"]
        assert sorted(again.json()["roles"]) == ["Customers", "Partners"]

    # None of the administrator's answers ever showed the code.
    assert_no_code_in(admin.seen, code)


def session_token_or_none(resp) -> str | None:
    from support import SESSION_COOKIE, find_cookie

    c = find_cookie(resp, SESSION_COOKIE)
    return c.value if c is not None and c.value else None


def test_the_stream_relay_delivers_the_invitation_email_through_ses(stack, admin):
    """Integration: the invitation's outbox item goes out on the table's stream, the relay invokes
    send-email, moto's SES records the email, the outbox item loses its code and the delivery is
    recorded on the invitation."""
    email = unique_email("relay")
    sent_before = len(stack.emails())
    started = time.monotonic()
    invitation = invite(admin, email=email, first_name="Katherine", last_name="Johnson")
    records = []
    deadline = time.monotonic() + RELAY_WAIT
    while not records and time.monotonic() < deadline:
        records = outbox_insert_of(stack, invitation["invitation_id"])
        time.sleep(0.2)
    assert len(records) == 1, "creating the invitation wrote one outbox item (one INSERT)"
    image = records[0]["dynamodb"]["NewImage"]
    assert image["to"] == {"S": email}
    assert image["kind"] == {"S": "invitation"}

    mails = invitation_emails(stack, email)
    took = time.monotonic() - started
    assert took < 10, f"the email took {took:.1f}s to arrive"
    assert len(mails) == 1
    assert mails[0]["subject"] == INVITATION_SUBJECT and mails[0]["from"] == INVITATION_SENDER
    code = emailed_invitation_code(mails[0], stack.portal_url)
    assert image["secret"]["S"] == code, "the outbox item carried the code that was sent"
    assert len(stack.emails()) > sent_before

    # The relay counts it; the invitation records the delivery; the outbox item keeps no code.
    assert any(r.function == "send-email" and r.delivered > 0 for r in stack.relays)
    await_delivery(admin, invitation["invitation_id"], "sent")
    item = outbox_table(stack).get_item(Key={"pk": image["pk"]["S"]}, ConsistentRead=True)["Item"]
    assert item["status"] == "sent", item
    assert "secret" not in item, "the plain code is removed from the outbox once sent"
    assert code not in json.dumps(item, default=str)


def test_a_stream_record_delivered_twice_sends_one_email(stack, admin):
    email = unique_email("twice")
    invitation = invite(admin, email=email, first_name="Dorothy", last_name="Vaughan")
    invitation_emails(stack, email)
    await_delivery(admin, invitation["invitation_id"], "sent")
    record = outbox_insert_of(stack, invitation["invitation_id"])[0]
    # Lambda delivers at least once: the same record again, alone and twice in one batch.
    assert invoke_function(stack, "send-email", {"Records": [record]}) == {"batchItemFailures": []}
    assert invoke_function(stack, "send-email", {"Records": [record, record]}) == {
        "batchItemFailures": []}
    stack.settle()
    assert len(emails_to(stack, email, INVITATION_SUBJECT)) == 1
    assert get_invitation(admin, invitation["invitation_id"])["delivery"] == "sent"


# --- resend and revoke ----------------------------------------------------------------------------

def test_resend_issues_a_new_code_and_voids_the_old_one(stack, admin, portal):
    contact, invitation, old = invited(stack, admin, roles=["Customers"])
    resp = admin.post_json(f"/admin/invitations/{invitation['invitation_id']}/resend", {})
    assert resp.status_code == 200, describe(resp)
    assert resp.json()["invitation_id"] == invitation["invitation_id"]
    assert resp.json()["status"] == "active"

    new = emailed_code(stack, contact["email"], count=2)
    assert new != old
    assert_invitation_invalid(portal.post_json("/redeem", {"code": old}))
    assert_invitation_invalid(portal.post_json("/redeem", {"code": old,
                                                           "password": strong_password()}))
    page = portal.get_page("/redeem?code=" + old)
    assert page.status_code == 400, describe(page)
    assert "invitation-for" not in Page(page.text).ids

    assert portal.post_json("/redeem", {"code": new}).status_code == 200
    resp = portal.post_json("/redeem", {"code": new, "password": strong_password()})
    assert resp.status_code == 201, describe(resp)
    assert resp.json()["contact_id"] == contact["contact_id"]
    assert resp.json()["roles"] == ["Customers"]
    assert_invitation_invalid(portal.post_json("/redeem", {"code": old}))
    seen = await_delivery(admin, invitation["invitation_id"], "sent")
    assert seen["redemptions"] == 1
    assert_no_code_in(admin.seen, old)
    assert_no_code_in(admin.seen, new)


def test_revoke_stops_the_code(stack, admin, portal):
    contact, invitation, code = invited(stack, admin)
    resp = admin.post_json(f"/admin/invitations/{invitation['invitation_id']}/revoke", {})
    assert resp.status_code == 200, describe(resp)
    assert resp.json()["status"] == "revoked"
    assert get_invitation(admin, invitation["invitation_id"])["status"] == "revoked"
    assert_invitation_invalid(portal.post_json("/redeem", {"code": code}))
    assert_invitation_invalid(portal.post_json("/redeem", {"code": code,
                                                           "password": strong_password()}))
    # A revoked invitation cannot be brought back by a resend.
    again = admin.post_json(f"/admin/invitations/{invitation['invitation_id']}/resend", {})
    assert again.status_code == 400, describe(again)
    stack.settle()
    assert len(emails_to(stack, contact["email"], INVITATION_SUBJECT)) == 1
    assert admin_contact(admin, contact["contact_id"], contact["email"])["portal_user"] is False


def test_unknown_invitation_ids_are_404(admin):
    for method, path in (("GET", "/admin/invitations/00000000-0000-0000-0000-000000000000"),
                         ("POST", "/admin/invitations/00000000-0000-0000-0000-000000000000/resend"),
                         ("POST", "/admin/invitations/00000000-0000-0000-0000-000000000000/revoke")):
        resp = admin.get_json(path) if method == "GET" else admin.post_json(path, {})
        assert resp.status_code == 404, describe(resp)
        assert error_body(resp)["error"] == "not_found"


# --- existing accounts and group invitations ------------------------------------------------------

def test_existing_account_redemption_assigns_the_roles_and_account(stack, admin, portal):
    username = unique_username("ex")
    body, reg = Portal(stack.portal_url).register(username=username, first_name="Mary",
                                                  last_name="Jackson")
    assert reg.status_code == 201, describe(reg)
    account_id = reg.json()["contact_id"]

    # Invited by email: the existing contact is found, not duplicated.
    invitation = invite(admin, email=body["email"].upper(), first_name="Mary",
                        last_name="Jackson", roles=["Partners"], account_id="fabrikam-7")
    assert invitation["contact_id"] == account_id
    code = emailed_code(stack, body["email"])

    # New credentials are refused: this contact already has some.
    resp = portal.post_json("/redeem", {"code": code, "password": strong_password()})
    assert resp.status_code == 400, describe(resp)
    assert error_body(resp)["error"] == "validation_failed"
    # A wrong password for the existing account is the sign-in answer and consumes nothing.
    resp = portal.post_json("/redeem", {"code": code, "existing_account": True,
                                        "login": username, "password": strong_password()})
    assert resp.status_code == 401, describe(resp)
    assert error_body(resp)["error"] == "invalid_credentials"
    assert get_invitation(admin, invitation["invitation_id"])["redemptions"] == 0

    resp = portal.post_json("/redeem", {"code": code, "existing_account": True,
                                        "login": username, "password": body["password"]})
    assert resp.status_code == 200, describe(resp)
    assert resp.json()["contact_id"] == account_id
    assert resp.json()["roles"] == ["Partners"]
    token = session_token(resp)
    profile = portal.get_json("/profile", headers=with_session(token)).json()
    assert profile["roles"] == ["Partners"]
    assert admin_contact(admin, account_id, body["email"])["account_id"] == "fabrikam-7"
    seen = get_invitation(admin, invitation["invitation_id"])
    assert seen["redemptions"] == 1
    assert [r["contact_id"] for r in seen["redeemed_by"]] == [account_id]
    # The password did not change.
    assert Portal(stack.portal_url).signin(body["email"], body["password"]).status_code == 200


def test_existing_account_keeps_its_roles_and_gains_the_new_ones(stack, admin, portal):
    first = create_contact(admin)
    inv1 = invite(admin, contact_id=first["contact_id"], roles=["Customers"])
    code1 = emailed_code(stack, first["email"])
    password = strong_password()
    assert portal.post_json("/redeem", {"code": code1, "password": password}).status_code == 201
    inv2 = invite(admin, contact_id=first["contact_id"], roles=["Partners", "Customers"])
    assert inv2["invitation_id"] != inv1["invitation_id"]
    code2 = emailed_code(stack, first["email"], count=2)
    resp = Portal(stack.portal_url).post_json(
        "/redeem", {"code": code2.lower().replace("-", ""), "existing_account": True,
                    "login": first["email"], "password": password})
    assert resp.status_code == 200, describe(resp)
    assert sorted(resp.json()["roles"]) == ["Customers", "Partners"]


def group_redeemer(tag: str = "member") -> dict:
    return {"email": unique_email(tag), "first_name": "Ada", "last_name": "Byron",
            "password": strong_password()}


def test_group_invitation_is_redeemed_up_to_its_maximum(stack, admin):
    contact, invitation, code = invited(stack, admin, type="group", max_redemptions=2,
                                        roles=["Members"], account_id="northwind")
    assert invitation["type"] == "group" and invitation["max_redemptions"] == 2

    page = Portal(stack.portal_url).get_page("/redeem?code=" + code)
    assert page.status_code == 200, describe(page)
    assert {"email", "first_name", "last_name", "password"} <= Page(page.text).form(
        "redeem-form").field_names()
    lookup = Portal(stack.portal_url).post_json("/redeem", {"code": code})
    assert lookup.status_code == 200 and lookup.json()["type"] == "group", describe(lookup)

    # A group redemption needs the new contact's email and names.
    resp = Portal(stack.portal_url).post_json("/redeem", {"code": code,
                                                          "password": strong_password()})
    assert resp.status_code == 400, describe(resp)
    assert error_body(resp)["error"] == "validation_failed"

    created = []
    for _ in range(2):
        who = group_redeemer()
        client = Portal(stack.portal_url)
        resp = client.post_json("/redeem", dict(who, code=code))
        assert resp.status_code == 201, describe(resp)
        body = resp.json()
        assert body["email"] == who["email"]
        assert body["roles"] == ["Members"]
        assert body["contact_id"] != contact["contact_id"], "a group redemption is a new contact"
        profile = client.get_json("/profile", headers=with_session(session_token(resp))).json()
        assert profile["email"] == who["email"] and profile["roles"] == ["Members"]
        assert admin_contact(admin, body["contact_id"], who["email"])["account_id"] == "northwind"
        created.append(body["contact_id"])
    assert len(set(created)) == 2

    assert_invitation_invalid(Portal(stack.portal_url).post_json(
        "/redeem", dict(group_redeemer(), code=code)))
    seen = get_invitation(admin, invitation["invitation_id"])
    assert seen["redemptions"] == 2
    assert sorted(r["contact_id"] for r in seen["redeemed_by"]) == sorted(created)
    assert seen["status"] != "active"


# --- races ----------------------------------------------------------------------------------------

def race(base_url: str, bodies: list[dict]) -> list:
    """POSTs each body to /redeem from its own client, all released at once."""
    barrier = threading.Barrier(len(bodies))
    results: list = [None] * len(bodies)

    def one(i):
        client = Portal(base_url)
        barrier.wait()
        try:
            results[i] = client.post_json("/redeem", bodies[i])
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for r in results:
        assert not isinstance(r, Exception) and r is not None, f"a request failed: {r!r}"
    return results


def test_ten_parallel_redemptions_of_a_single_code_give_exactly_one_success(stack, admin):
    contact, invitation, code = invited(stack, admin, roles=["Customers"])
    bodies = [{"code": code, "password": strong_password()} for _ in range(10)]
    results = race(stack.portal_url, bodies)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] + [400] * 9, (statuses, [describe(r) for r in results
                                                      if r.status_code != 400])
    for r in results:
        if r.status_code == 400:
            assert_invitation_invalid(r)
    winner = next(i for i, r in enumerate(results) if r.status_code == 201)
    assert results[winner].json()["contact_id"] == contact["contact_id"]
    seen = get_invitation(admin, invitation["invitation_id"])
    assert seen["redemptions"] == 1 and len(seen["redeemed_by"]) == 1
    # The winner's password is the one that works (a few losers' only: five failures lock).
    resp = Portal(stack.portal_url).signin(contact["email"], bodies[winner]["password"])
    assert resp.status_code == 200, describe(resp)
    for body in [b for i, b in enumerate(bodies) if i != winner][:3]:
        resp = Portal(stack.portal_url).signin(contact["email"], body["password"])
        assert resp.status_code == 401, describe(resp)


def test_a_group_invitation_stops_at_its_maximum_under_a_race(stack, admin):
    _, invitation, code = invited(stack, admin, type="group", max_redemptions=3)
    results = race(stack.portal_url, [dict(group_redeemer("race"), code=code) for _ in range(10)])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201] * 3 + [400] * 7, (statuses, [describe(r) for r in results
                                                          if r.status_code != 400])
    for r in results:
        if r.status_code == 400:
            assert_invitation_invalid(r)
    seen = get_invitation(admin, invitation["invitation_id"])
    assert seen["redemptions"] == 3 and len(seen["redeemed_by"]) == 3
    winners = {r.json()["contact_id"] for r in results if r.status_code == 201}
    assert {r["contact_id"] for r in seen["redeemed_by"]} == winners


# --- codes ----------------------------------------------------------------------------------------

def test_every_bad_code_gets_the_same_answer(stack, admin):
    _, _, used = invited(stack, admin)
    assert Portal(stack.portal_url).post_json(
        "/redeem", {"code": used, "password": strong_password()}).status_code == 201
    _, revoked_invitation, revoked = invited(stack, admin)
    assert admin.post_json(f"/admin/invitations/{revoked_invitation['invitation_id']}/revoke",
                           {}).status_code == 200
    contact, replaced_invitation, replaced = invited(stack, admin)
    assert admin.post_json(f"/admin/invitations/{replaced_invitation['invitation_id']}/resend",
                           {}).status_code == 200
    assert emailed_code(stack, contact["email"], count=2) != replaced
    unknown = "K7RD-QX2M-9TVB-HC4N-WE3P-G6JS-1ZA5-YF08"
    malformed = "not-a-code"

    bad = {"unknown": unknown, "malformed": malformed, "used up": used, "revoked": revoked,
           "replaced": replaced}
    answers = {}
    for what, code in bad.items():
        client = Portal(stack.portal_url)
        lookup = client.post_json("/redeem", {"code": code})
        redeem = client.post_json("/redeem", {"code": code, "password": strong_password()})
        get_json = client.get_json("/redeem?code=" + code)
        page = client.get_page("/redeem?code=" + code)
        for resp in (lookup, redeem, get_json):
            assert_invitation_invalid(resp)
        assert page.status_code == 400, describe(page)
        html = Page(page.text)
        assert "invitation-for" not in html.ids and "redeem-form" not in [
            f.attrs.get("id") for f in html.forms], f"{what}: no form for a bad code"
        assert session_token_or_none(redeem) is None
        answers[what] = (lookup.json(), redeem.json(), get_json.json(), html.ids.get("form-error"))
    distinct = {json.dumps(a, sort_keys=True) for a in answers.values()}
    assert len(distinct) == 1, f"bad codes must be indistinguishable: {answers}"


def test_codes_are_read_ignoring_case_spaces_and_hyphens(stack, admin):
    contact, invitation, code = invited(stack, admin)
    bare = code.replace("-", "")
    for typed in (code.lower(), code.replace("-", " "), bare, bare.lower(), f"  {code}  ",
                  " ".join(bare[i:i + 2] for i in range(0, len(bare), 2))):
        resp = Portal(stack.portal_url).post_json("/redeem", {"code": typed})
        assert resp.status_code == 200, f"{typed!r}: {describe(resp)}"
        assert resp.json()["invitation_id"] == invitation["invitation_id"]
    page = Portal(stack.portal_url).get_page("/redeem?code=" + bare.lower())
    assert page.status_code == 200 and "Grace Hopper" in Page(page.text).ids["invitation-for"]
    resp = Portal(stack.portal_url).post_json("/redeem", {"code": bare.lower(),
                                                          "password": strong_password()})
    assert resp.status_code == 201, describe(resp)
    assert resp.json()["contact_id"] == contact["contact_id"]


def test_codes_are_long_random_and_distinct(stack, admin):
    codes = {invited(stack, admin)[2] for _ in range(3)}
    assert len(codes) == 3
    for code in codes:
        assert len(code.replace("-", "")) == 32, "160 bits in Crockford base32"


# --- administrators only, and the code never shown to them ----------------------------------------

def test_admin_routes_are_for_administrators_only(stack, admin, portal):
    _, invitation, code = invited(stack, admin)
    iid = invitation["invitation_id"]
    _, reg = Portal(stack.portal_url).register()
    customer = with_session(session_token(reg))
    nobody = [unique_email("nope"), unique_email("nope")]
    calls = [
        ("GET", "/admin/contacts", None),
        ("GET", f"/admin/contacts?contact_id={invitation['contact_id']}", None),
        ("POST", "/admin/contacts", {"email": nobody[0], "first_name": "No",
                                     "last_name": "Body"}),
        ("POST", "/admin/invitations", {"email": nobody[1], "first_name": "No",
                                        "last_name": "Body"}),
        ("POST", "/admin/invitations", {"contact_id": invitation["contact_id"]}),
        ("GET", f"/admin/invitations/{iid}", None),
        ("POST", f"/admin/invitations/{iid}/resend", {}),
        ("POST", f"/admin/invitations/{iid}/revoke", {}),
    ]
    for method, path, body in calls:
        for headers, status, error in ((customer, 403, "forbidden"), ({}, 401, "unauthenticated")):
            if method == "GET":
                resp = portal.get_json(path, headers=headers)
            else:
                resp = portal.post_json(path, body, headers=headers)
            assert resp.status_code == status, describe(resp)
            assert error_body(resp)["error"] == error
            assert_no_code_in([resp.text], code)
    # Browsers without a session are sent to sign in.
    for path in ("/admin/contacts", f"/admin/invitations/{iid}"):
        resp = portal.get_page(path)
        assert resp.status_code == 303 and path_of(resp.headers["Location"]) == "/signin", \
            describe(resp)
    # Nothing changed.
    seen = get_invitation(admin, iid)
    assert (seen["status"], seen["delivery"]) == ("active", "sent")
    stack.settle()
    assert len(emails_to(stack, invitation["email"], INVITATION_SUBJECT)) == 1
    for email in nobody:
        assert admin.get_json("/admin/contacts?q=" + email).json()["contacts"] == []
        assert emails_to(stack, email) == []
    assert Portal(stack.portal_url).post_json("/redeem", {"code": code}).status_code == 200


def test_no_admin_view_ever_shows_the_code(stack, admin):
    contact, invitation, code = invited(stack, admin, roles=["Customers"])
    iid, cid = invitation["invitation_id"], contact["contact_id"]
    await_delivery(admin, iid, "sent")
    views = [
        admin.get_json("/admin/contacts"),
        admin.get_json(f"/admin/contacts?contact_id={cid}"),
        admin.get_json(f"/admin/contacts?q={contact['email']}"),
        admin.get_json(f"/admin/invitations/{iid}"),
        admin.get_page("/admin/contacts"),
        admin.get_page(f"/admin/contacts?contact_id={cid}"),
        admin.get_page(f"/admin/invitations/{iid}"),
    ]
    for v in views:
        assert v.status_code == 200, describe(v)
    listing = views[1].json()
    assert [i["invitation_id"] for i in listing["invitations"]] == [iid]
    resent = admin.post_json(f"/admin/invitations/{iid}/resend", {})
    assert resent.status_code == 200, describe(resent)
    new = emailed_code(stack, contact["email"], count=2)
    views.append(admin.get_page(f"/admin/invitations/{iid}"))
    revoked = admin.post_json(f"/admin/invitations/{iid}/revoke", {})
    assert revoked.status_code == 200, describe(revoked)
    for c in (code, new):
        assert_no_code_in([v.text for v in views] + admin.seen, c)


# --- validation and the admin pages over HTTP -----------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"contact_id": "00000000-0000-0000-0000-000000000000"}, "contact_id"),
    ({"type": "triple"}, "type"),
    ({"type": "single", "max_redemptions": 5}, "max_redemptions"),
    ({"type": "group", "max_redemptions": 0}, "max_redemptions"),
    ({"expires_in_days": 0}, "expires_in_days"),
    ({"expires_in_days": "soon"}, "expires_in_days"),
    ({"redirect_path": "https://evil.example/"}, "redirect_path"),
    ({"redirect_path": "//evil.example/"}, "redirect_path"),
    ({"roles": 5}, "roles"),
    ({"roles": ["R" * 65]}, "roles"),
    ({"email": "not-an-email"}, "email"),
])
def test_invalid_invitation_requests_are_400_naming_the_field(stack, admin, body, field):
    full = {"email": unique_email("bad"), "first_name": "Bad", "last_name": "Request"}
    if "contact_id" in body:
        full = {}
    full.update(body)
    resp = admin.post_json("/admin/invitations", full)
    assert resp.status_code == 400, describe(resp)
    err = error_body(resp)
    assert err["error"] == "validation_failed"
    assert field in err.get("fields", {}), err
    if "email" in full and field != "email":
        stack.settle()
        assert emails_to(stack, full["email"]) == [], "nothing was sent"


def test_the_admin_pages_create_an_invitation_with_forms(stack, admin):
    page = admin.get_page("/admin/contacts")
    assert page.status_code == 200, describe(page)
    form = Page(page.text).form("contact-form")
    assert {"csrf_token", "email", "first_name", "last_name", "phone"} <= form.field_names()
    email = unique_email("formcontact")
    resp = admin.post_form("/admin/contacts", {"csrf_token": form.value("csrf_token"),
                                               "email": email, "first_name": "Hedy",
                                               "last_name": "Lamarr", "phone": ""})
    assert resp.status_code == 303, describe(resp)
    location = resp.headers["Location"]
    assert path_of(location) == "/admin/contacts" and "contact_id=" in location

    page = admin.get_page(location.replace(stack.portal_url, ""))
    assert page.status_code == 200, describe(page)
    html = Page(page.text)
    assert html.ids.get("contact-email") == email
    form = html.form("invitation-form")
    assert {"csrf_token", "contact_id", "type", "max_redemptions", "expires_in_days", "roles",
            "account_id", "redirect_path"} <= form.field_names()
    options = re.findall(r'<option value="(\w+)"', page.text)
    assert {"single", "group"} <= set(options)
    fields = {i["name"]: i.get("value", "") for i in form.inputs if i.get("name")}
    fields.update({"type": "single", "max_redemptions": "", "roles": "Customers, Partners",
                   "account_id": "adventure-works", "redirect_path": "/"})
    resp = admin.post_form("/admin/invitations", fields)
    assert resp.status_code == 303, describe(resp)
    target = path_of(resp.headers["Location"])
    assert re.fullmatch(r"/admin/invitations/[\w-]+", target), target
    iid = target.rsplit("/", 1)[1]

    code = emailed_code(stack, email)
    page = admin.get_page(target)
    assert page.status_code == 200, describe(page)
    html = Page(page.text)
    assert html.ids.get("invitation-status") == "active"
    assert html.ids.get("invitation-delivery") in ("pending", "sent")
    html.form("resend-form")
    html.form("revoke-form")
    assert_no_code_in([page.text], code)
    seen = get_invitation(admin, iid)
    assert sorted(seen["roles"]) == ["Customers", "Partners"]
    assert seen["redirect_path"] == "/"

    # The contact redeems through the form and lands on the invitation's path.
    visitor = Portal(stack.portal_url)
    page = visitor.get_page("/redeem?code=" + code)
    form = Page(page.text).form("redeem-form")
    resp = visitor.post_form("/redeem", {"csrf_token": form.value("csrf_token"),
                                         "code": form.value("code"),
                                         "password": strong_password()})
    assert resp.status_code == 303, describe(resp)
    assert path_of(resp.headers["Location"]) == "/"
    token = session_token(resp)
    profile = visitor.get_json("/profile", headers=with_session(token)).json()
    assert sorted(profile["roles"]) == ["Customers", "Partners"]

    # Forms without their anti-CSRF token change nothing.
    for path in ("/admin/contacts", f"/admin/invitations/{iid}/revoke"):
        resp = admin.post_form(path, {"email": unique_email("csrf"), "first_name": "No",
                                      "last_name": "Token"})
        assert resp.status_code == 403, describe(resp)
    assert get_invitation(admin, iid)["status"] == "redeemed"
