"""Bounces and complaints end to end (issue 19, item 5), on the local stack: SES's bounce
notification, as SNS hands it to the `email-feedback` function, marks the account's address; staff
see it; a reset link is not sent to it (its outbox message fails, saying why); the person asks for a
confirmation link while signed in, follows it, and the mark is gone. The function's AWS
calls (the real DynamoDB API on moto) are recorded, and IAM coverage holds them against its role."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

import boto3

from support import (
    Portal,
    await_emails,
    describe,
    emailed_token,
    invoke_function,
    session_token,
    unique_email,
    with_session,
)
from test_invitations import admin  # noqa: F401 (the admin fixture)

EVENT = json.loads((Path(__file__).resolve().parent.parent / "events" / "email-feedback"
                    / "permanent-bounce-unknown-address.json").read_text())


def bounce_for(address: str) -> dict:
    """The sample SNS event with its permanent bounce addressed to `address`."""
    event = copy.deepcopy(EVENT)
    ses = json.loads(event["Records"][0]["Sns"]["Message"])
    ses["bounce"]["bouncedRecipients"][0]["emailAddress"] = address
    ses["mail"]["destination"] = [address]
    event["Records"][0]["Sns"]["Message"] = json.dumps(ses)
    return event


def failed_messages_to(stack, address: str) -> list[str]:
    """The reasons of the settled outbox messages to `address` that failed (a settled message keeps
    only its address's digest, `recipient`)."""
    ddb = boto3.client("dynamodb", endpoint_url=stack.aws_endpoint, region_name=stack.env["AWS_REGION"],
                       aws_access_key_id="test", aws_secret_access_key="test")
    recipient = hashlib.sha256(address.lower().encode()).hexdigest()
    reasons = []
    for page in ddb.get_paginator("scan").paginate(
            TableName=stack.tables["OutboxTable"], ConsistentRead=True,
            FilterExpression="recipient = :r", ExpressionAttributeValues={":r": {"S": recipient}}):
        reasons += [i["error"]["S"] for i in page["Items"]
                    if i.get("status", {}).get("S") == "failed" and "error" in i]
    return reasons


def test_a_bounce_stops_mail_until_the_person_confirms_the_address_again(stack, base_url, admin):  # noqa: F811
    email = unique_email("bounced")
    person = Portal(base_url)
    _, registered = person.register(email=email)
    assert registered.status_code == 201, describe(registered)
    session = with_session(session_token(registered))
    contact_id = registered.json()["contact_id"]
    # Registration's own confirmation link goes out first (before the address bounces).
    await_emails(stack, email, "Confirm your email address")

    assert invoke_function(stack, "email-feedback", bounce_for(email)) is None
    mark = person.get_json("/profile", headers=session).json()["email_undeliverable"]
    assert mark["reason"] == "bounce" and mark["detail"].startswith("Permanent bounce"), mark
    staff_view = admin.get_json(f"/admin/contacts/{contact_id}")
    assert staff_view.status_code == 200, describe(staff_view)
    assert staff_view.json()["email_undeliverable"]["reason"] == "bounce"

    # A reset link is not sent: its message fails, saying why.
    assert person.post_json("/forgot-password", {"email": email}).status_code == 202
    deadline = time.monotonic() + 30
    while not failed_messages_to(stack, email):
        assert time.monotonic() < deadline, "the reset request to a bounced address never settled"
        time.sleep(0.2)
    assert failed_messages_to(stack, email)[0].startswith("undeliverable:")

    # The person asks for a confirmation link while signed in: it goes, and following it lifts the mark.
    asked = person.post_json("/confirm-email", {"email": email}, headers=session)
    assert asked.status_code == 202, describe(asked)
    link = await_emails(stack, email, "Confirm your email address", count=2)[-1]
    confirmed = person.post_json("/confirm-email", {"token": emailed_token(link, base_url, "/confirm-email")})
    assert confirmed.status_code == 200, describe(confirmed)
    assert person.get_json("/profile", headers=session).json()["email_undeliverable"] is None
    assert admin.get_json(f"/admin/contacts/{contact_id}").json()["email_undeliverable"] is None
    # (That mail then reaches the address again is the suite's test: this address has used the
    # three emails an hour the stack allows it.)
