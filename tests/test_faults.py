"""Faults end to end: a hung local AWS endpoint (the moto server paused with SIGSTOP) costs a
registration a clean 503 `internal` within 10 s, not a hang, and leaves nothing half-written: the
same registration succeeds once the endpoint resumes. This stack is the test's own (pausing the
shared one would stall the other tests)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time


from conftest import stack_fixture
from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Portal,
    await_emails,
    describe,
    emails_to,
    error_body,
    registration,
    unique_email,
)

INVITATION_SUBJECT = "You're invited to the customer portal"

# The SDK's operation timeout (shared/src/aws.rs) is 5 s; the contract: a clean error within 10 s.
BOUND_SECS = 10


pausable_stack = stack_fixture("pausable_stack", "pausable",
                               doc="A stack of the test's own: its moto server is paused.")


def local_aws_process(stack):
    return next(proc for name, proc in stack._procs if name.startswith("local AWS"))


def test_a_paused_database_gets_a_clean_503_within_the_bound_and_the_retry_succeeds(pausable_stack):
    portal = Portal(pausable_stack.portal_url)
    # The register function is up and has its connections (a first request after start-up).
    assert portal.post_json("/register", registration()).status_code == 201
    body = registration()
    moto = local_aws_process(pausable_stack)
    os.kill(moto.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        paused = portal.post_json("/register", body, timeout=30)
        elapsed = time.monotonic() - started
    finally:
        os.kill(moto.pid, signal.SIGCONT)
    assert paused.status_code == 503, describe(paused)
    assert error_body(paused)["error"] == "internal"
    assert elapsed < BOUND_SECS, f"the clean error took {elapsed:.1f} s"
    # Nothing was half-written: the same registration now goes through (no email_taken).
    retried = portal.post_json("/register", body)
    assert retried.status_code == 201, describe(retried)
    assert retried.json()["email"] == body["email"]


def test_an_idempotency_key_gives_the_first_answer_again_and_refuses_another_body(stack):
    admin = Portal(stack.portal_url)
    assert admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    body = {"email": unique_email("idem"), "first_name": "Grace", "last_name": "Hopper"}
    key = {"Idempotency-Key": f"create-{body['email']}"}
    first = admin.post_json("/admin/invitations", body, headers=key)
    assert first.status_code == 201, describe(first)
    again = admin.post_json("/admin/invitations", body, headers=key)
    assert (again.status_code, again.json()) == (201, first.json()), describe(again)
    # One invitation, so one email: the retry queued nothing.
    await_emails(stack, body["email"], INVITATION_SUBJECT)
    stack.settle()  # a second email, had one been queued, is out now
    assert len(emails_to(stack, body["email"])) == 1
    other = admin.post_json("/admin/invitations", {**body, "first_name": "Ada"}, headers=key)
    assert other.status_code == 422, describe(other)
    assert error_body(other)["error"] == "idempotency_conflict"


# --- the operators' repair path (portal-admin outbox) --------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


emails_off_stack = stack_fixture(
    "emails_off_stack", "emails-off", {"PORTAL_SEND_INVITATION_EMAILS": "false"},
    doc='A stack whose "Send Invitation" workflow is off: invitation emails stay pending (stuck).')


def portal_admin(stack, *args, stdin: str = "") -> str:
    done = subprocess.run(["cargo", "run", "-q", "--bin", "portal-admin", "--", *args], cwd=ROOT,
                          env=stack._child_env(), input=stdin, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_operators_list_stuck_messages_without_secrets_and_queue_them_again(emails_off_stack):
    admin = Portal(emails_off_stack.portal_url)
    assert admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    email = unique_email("stuck")
    created = admin.post_json("/admin/invitations",
                              {"email": email, "first_name": "Grace", "last_name": "Hopper"})
    assert created.status_code == 201, describe(created)
    invitation_id = created.json()["invitation_id"]
    emails_off_stack.settle()  # the relay has delivered it; send-email left it pending (emails are off)

    status = portal_admin(emails_off_stack, "outbox", "status", "--stale-after", "0s")
    stuck = [line for line in status.splitlines() if invitation_id in line]
    assert len(stuck) == 1 and "STALE" in stuck[0] and "pending" in stuck[0], status
    assert "@" not in status.replace(ADMIN_EMAIL, ""), "no address in the listing"
    message_id = stuck[0].split()[0]

    # The failure queue's record of a batch that held it resolves to it.
    now = datetime.datetime.now(datetime.timezone.utc)
    iso = lambda t: t.isoformat(timespec="milliseconds").replace("+00:00", "Z")  # noqa: E731
    record = {"DDBStreamBatchInfo": {
        "shardId": "shardId-1", "startSequenceNumber": "1", "endSequenceNumber": "9", "batchSize": 1,
        "approximateArrivalOfFirstRecord": iso(now - datetime.timedelta(minutes=2)),
        "approximateArrivalOfLastRecord": iso(now)}}
    received = json.dumps({"Messages": [{"Body": json.dumps(record)}]})
    resolved = portal_admin(emails_off_stack, "outbox", "dlq", stdin=received)
    assert message_id in resolved, resolved

    retried = portal_admin(emails_off_stack, "outbox", "retry", "--id", message_id)
    assert f"{message_id}: queued again as" in retried, retried
    again = portal_admin(emails_off_stack, "outbox", "retry", "--id", message_id)
    assert "its code, link and address are gone" in again, again
