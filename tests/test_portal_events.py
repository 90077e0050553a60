"""Portal events end to end (CONTRACT.md "Events"): register, create and redeem an invitation,
change a password, revoke an invitation over HTTP against the local stack; then read what the
local bus `portal-events` delivered to its catch-all tap queue, as `make events` does, and find
each fact once with the right ids, Source `portal`, and no secret in any detail."""

from __future__ import annotations

import os
import re
import subprocess
import time

import local_aws
from conftest import ROOT
from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    INVITATION_SUBJECT,
    Portal,
    await_emails,
    describe,
    emailed_invitation_code,
    strong_password,
    unique_email,
)

EVENT_WAIT = 30  # seconds; the relay polls every 0.5 s, an event normally arrives within 2 s


def published(stack) -> list[dict]:
    return local_aws.published_events(stack.aws_endpoint)


def await_events(stack, wanted: list[tuple[str, dict]]) -> list[dict]:
    """Waits until, for each (DetailType, ids), an event with those detail values was published;
    returns every published event."""
    deadline = time.monotonic() + EVENT_WAIT
    while True:
        events = published(stack)
        missing = [(kind, ids) for kind, ids in wanted if not matching(events, kind, ids)]
        if not missing:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"not published within {EVENT_WAIT}s: {missing}; published: "
                                 f"{[(e['detail-type'], e['detail']) for e in events]}")
        time.sleep(0.3)


def matching(events: list[dict], kind: str, ids: dict) -> list[dict]:
    return [e for e in events if e.get("detail-type") == kind
            and all(e["detail"].get(k) == v for k, v in ids.items())]


def test_each_fact_is_published_once_with_its_ids_and_no_secret(stack):
    # Registration.
    person = Portal(stack.portal_url)
    body, resp = person.register(email=unique_email("events"))
    assert resp.status_code == 201, describe(resp)
    contact_id = resp.json()["contact_id"]

    # An invitation created, emailed and redeemed with new credentials.
    admin = Portal(stack.portal_url)
    assert admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    invitee = unique_email("events-invitee")
    resp = admin.post_json("/admin/invitations",
                           {"email": invitee, "first_name": "Grace", "last_name": "Hopper"})
    assert resp.status_code == 201, describe(resp)
    invitation = resp.json()
    invitation_id, invitee_id = invitation["invitation_id"], invitation["contact_id"]
    (email,) = await_emails(stack, invitee, INVITATION_SUBJECT)
    code = emailed_invitation_code(email, stack.portal_url)
    invitee_password = strong_password()
    resp = Portal(stack.portal_url).post_json("/redeem", {"code": code, "password": invitee_password})
    assert resp.status_code == 201, describe(resp)

    # A password change.
    new_password = strong_password()
    resp = person.post_json("/profile/password",
                            {"current_password": body["password"], "new_password": new_password})
    assert resp.status_code == 204, describe(resp)

    # A revocation (of a second invitation), twice: one fact.
    resp = admin.post_json("/admin/invitations", {"email": unique_email("events-revoked"),
                                                  "first_name": "Rev", "last_name": "Oked"})
    assert resp.status_code == 201, describe(resp)
    revoked_id = resp.json()["invitation_id"]
    for _ in range(2):
        resp = admin.post_json(f"/admin/invitations/{revoked_id}/revoke", {})
        assert resp.status_code == 200, describe(resp)

    wanted = [
        ("ContactRegistered", {"contact_id": contact_id, "method": "password"}),
        ("InvitationCreated", {"invitation_id": invitation_id, "contact_id": invitee_id}),
        ("InvitationSent", {"invitation_id": invitation_id, "contact_id": invitee_id}),
        ("InvitationRedeemed", {"invitation_id": invitation_id, "contact_id": invitee_id,
                                "created": True}),
        ("ContactRegistered", {"contact_id": invitee_id, "method": "password"}),
        ("PasswordChanged", {"contact_id": contact_id}),
        ("InvitationCreated", {"invitation_id": revoked_id}),
        ("InvitationRevoked", {"invitation_id": revoked_id}),
    ]
    events = await_events(stack, wanted)
    stack.settle()  # a duplicate, were there one, would be out now
    events = published(stack)
    for kind, ids in wanted:
        found = matching(events, kind, ids)
        assert len(found) == 1, f"{kind} {ids}: published {len(found)} times: {found}"
        (event,) = found
        assert event["source"] == "portal"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["detail"]["occurred_at"])
        assert event["detail"]["event_id"]
    ids = [e["detail"]["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "every event has its own event_id, published once"
    text = repr([e["detail"] for e in events])
    for secret in (code, code.replace("-", ""), body["password"], new_password, invitee_password,
                   "$argon2", "@"):
        assert secret not in text, f"a detail holds {secret!r}"


def test_make_events_prints_what_was_published(stack):
    person = Portal(stack.portal_url)
    _, resp = person.register(email=unique_email("make-events"))
    assert resp.status_code == 201, describe(resp)
    contact_id = resp.json()["contact_id"]
    await_events(stack, [("ContactRegistered", {"contact_id": contact_id})])
    port = stack.aws_endpoint.rsplit(":", 1)[1]
    out = subprocess.run(["make", "-s", "events", f"LOCAL_AWS_PORT={port}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True,
                         env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    lines = [line for line in out.stdout.splitlines() if contact_id in line]
    assert len(lines) == 1, out.stdout[-2000:]
    kind, when, detail = lines[0].split("  ", 2)
    assert kind == "ContactRegistered"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", when), when
    assert f'"contact_id": "{contact_id}"' in detail and '"event_id": "' in detail


def test_make_events_says_where_it_looked_when_no_stack_runs():
    from conftest import free_port

    port = free_port()
    out = subprocess.run(["make", "-s", "events", f"LOCAL_AWS_PORT={port}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "is the stack running (make run)?" in out.stderr
