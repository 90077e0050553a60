"""Group invitations to several contacts end to end, through the contract: an administrator lists
contacts in `contact_ids`, one group invitation is created, its one code is emailed to each listed
contact (the fan-out expanded by send-email off the outbox stream), the detail shows each contact's
delivery until all are sent, and a contact redeems the code."""

from __future__ import annotations

import time

import pytest

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    INVITATION_SUBJECT,
    Portal,
    await_emails,
    describe,
    emailed_invitation_code,
    error_body,
    strong_password,
    unique_email,
)

RELAY_WAIT = 60  # seconds: emails are paced to the account's sending rate (moto: 1 per second)


@pytest.fixture
def admin(base_url) -> Portal:
    a = Portal(base_url)
    resp = a.signin(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert resp.status_code == 200, describe(resp)
    return a


def create_contact(admin: Portal) -> dict:
    body = {"email": unique_email("member"), "first_name": "Grace", "last_name": "Hopper"}
    resp = admin.post_json("/admin/contacts", body)
    assert resp.status_code == 201, describe(resp)
    return resp.json()


def await_all_sent(admin: Portal, invitation_id: str) -> dict:
    """The invitation once every delivery and the aggregate say sent (send-email records a
    contact's delivery, then the aggregate, in two writes), or at the deadline."""
    deadline = time.monotonic() + RELAY_WAIT
    while True:
        resp = admin.get_json(f"/admin/invitations/{invitation_id}")
        assert resp.status_code == 200, describe(resp)
        shown = resp.json()
        states = {d["status"] for d in shown.get("deliveries", [])}
        if (states, shown["delivery"]) == ({"sent"}, "sent") or time.monotonic() > deadline:
            return shown
        time.sleep(0.5)


def test_a_group_invitation_emails_its_one_code_to_each_listed_contact(stack, admin):
    contacts = [create_contact(admin) for _ in range(3)]
    ids = [c["contact_id"] for c in contacts]
    resp = admin.post_json("/admin/invitations", {"type": "group", "contact_ids": ids,
                                                  "roles": ["Members"]})
    assert resp.status_code == 201, describe(resp)
    invitation = resp.json()
    assert invitation["type"] == "group"
    assert invitation["max_redemptions"] >= 3

    shown = await_all_sent(admin, invitation["invitation_id"])
    assert shown["delivery"] == "sent", shown
    by_contact = {d["contact_id"]: d for d in shown["deliveries"]}
    assert set(by_contact) == set(ids)
    for contact in contacts:
        assert by_contact[contact["contact_id"]]["email"] == contact["email"]
        assert by_contact[contact["contact_id"]]["status"] == "sent"

    codes = set()
    for contact in contacts:
        emails = await_emails(stack, contact["email"], INVITATION_SUBJECT, timeout=RELAY_WAIT)
        assert len(emails) == 1, emails
        codes.add(emailed_invitation_code(emails[0], stack.portal_url))
    assert len(codes) == 1, "every listed contact got the same code"
    code = codes.pop()
    for text in (resp.text, describe(admin.get_json(f"/admin/invitations/{invitation['invitation_id']}"))):
        assert code not in text, "no admin response shows the code"

    # One contact redeems: a group redemption gives them portal credentials.
    redeemer = Portal(stack.portal_url)
    who = {"email": unique_email("redeemer"), "first_name": "Grace", "last_name": "Hopper",
           "password": strong_password()}
    redeemed = redeemer.post_json("/redeem", dict(who, code=code))
    assert redeemed.status_code == 201, describe(redeemed)
    assert redeemed.json()["roles"] == ["Members"]
    after = admin.get_json(f"/admin/invitations/{invitation['invitation_id']}").json()
    assert after["redemptions"] == 1
    assert after["redeemed_by"][0]["contact_id"] == redeemed.json()["contact_id"]


def test_contact_ids_are_checked(stack, admin):
    contact = create_contact(admin)
    cases = [
        {"type": "group", "contact_ids": []},
        {"type": "group", "contact_ids": [contact["contact_id"], contact["contact_id"]]},
        {"type": "group", "contact_ids": ["00000000-0000-0000-0000-000000000000"]},
        {"type": "group", "contact_ids": [f"00000000-0000-0000-0000-{i:012}" for i in range(101)]},
        {"type": "single", "contact_ids": [contact["contact_id"]]},
        {"type": "group", "contact_ids": [contact["contact_id"]], "contact_id": contact["contact_id"]},
    ]
    for body in cases:
        resp = admin.post_json("/admin/invitations", body)
        assert resp.status_code == 400, (body, describe(resp))
        err = error_body(resp)
        assert err["error"] == "validation_failed", err
        assert "contact_ids" in err["fields"], err


def test_the_create_honours_its_idempotency_key(stack, admin):
    ids = [create_contact(admin)["contact_id"] for _ in range(2)]
    body = {"type": "group", "contact_ids": ids}
    headers = {"Idempotency-Key": unique_email("key")}
    first = admin.post_json("/admin/invitations", body, headers=headers)
    assert first.status_code == 201, describe(first)
    again = admin.post_json("/admin/invitations", body, headers=headers)
    assert again.status_code == 201, describe(again)
    assert again.json()["invitation_id"] == first.json()["invitation_id"]
