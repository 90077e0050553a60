#!/usr/bin/env python3
"""make smoke URL=https://portal.example.com [STACK=portal]: the HTTP journey of the end-to-end
suite against a deployed portal, with a throwaway account, cleaned up afterwards.

  smoke.py URL [--stack NAME]

The journey: the home page, registration (JSON), the profile with the new session, sign-out (the
session ends server-side), a wrong password (401 invalid_credentials), sign-in, a password-reset
request, sign-out. Every POST carries `Origin: URL`, as a browser on the portal's pages does: a
portal whose PortalBaseUrl is not URL refuses them (403), as it would every form. With --stack,
URL must also be the stack's PortalUrl output. The throwaway address is on the SES mailbox simulator
(success+smoke-<random>@simulator.amazonses.com): the emails the journey causes are accepted
without reaching anyone and count against neither the sandbox nor the bounce rate.

--stack NAME: the emails the journey caused (the confirmation and the reset request) are followed
in the stack's outbox table until each is `sent`, that is SES accepted it (a Scan filtered on the
throwaway address, up to --email-wait seconds: an unverified sender or an SES refusal marks them
`failed`, which fails the smoke test with the reason). Then delete the throwaway contact (its item, its email guard item and its
sessions) from the tables that the stack's outputs name (CloudFormation DescribeStacks, with the
caller's AWS credentials: DynamoDB Query and DeleteItem on those tables). Its email tokens,
rate-limit counters and outbox items expire by TTL. Without --stack the account stays, signed
out, and its address is printed. Exit status 0 when every step answered as the contract says."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import uuid

import requests

TIMEOUT = 30
PASSWORD = f"Smoke-Test-Lantern-{uuid.uuid4().hex[:10]}"  # long, random: zxcvbn accepts it
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class SmokeFailure(Exception):
    pass


class Journey:
    def __init__(self, base_url: str):
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.email = f"success+smoke-{uuid.uuid4().hex[:12]}@simulator.amazonses.com"
        self.contact_id: str | None = None

    def call(self, method: str, path: str, expect: int, body=None, what: str = "") -> requests.Response:
        # As a browser on the portal's own pages sends it: the portal refuses a POST from any other
        # origin, so a PortalBaseUrl that is not the address people use fails here, as every
        # browser form would.
        headers = {**JSON, "Origin": self.base} if method == "POST" else JSON
        r = self.http.request(method, self.base + path, headers=headers, timeout=TIMEOUT,
                              allow_redirects=False,
                              data=json.dumps(body) if body is not None else None)
        line = f"{method} {path} -> {r.status_code}"
        if r.status_code != expect:
            raise SmokeFailure(f"{line}, expected {expect} {what}: {r.text[:300]!r}")
        print(f"ok  {line} {what}".rstrip(), flush=True)
        return r

    def run(self) -> None:
        home = self.http.get(self.base + "/", headers={"Accept": "text/html"}, timeout=TIMEOUT)
        if home.status_code != 200 or "text/html" not in home.headers.get("Content-Type", ""):
            raise SmokeFailure(f"GET / -> {home.status_code}, expected the HTML home page")
        print("ok  GET / -> 200 (home page)")
        r = self.call("POST", "/register", 201, {
            "email": self.email, "password": PASSWORD, "first_name": "Smoke", "last_name": "Test"},
            "(registered, signed in)")
        self.contact_id = r.json()["contact_id"]
        profile = self.call("GET", "/profile", 200, what="(the new session works)").json()
        if profile.get("email", "").lower() != self.email.lower():
            raise SmokeFailure(f"GET /profile shows {profile.get('email')!r}, not {self.email!r}")
        self.call("POST", "/signout", 204, what="(signed out)")
        self.call("GET", "/profile", 401, what="(the session ended server-side)")
        wrong = self.call("POST", "/signin", 401, {"login": self.email, "password": PASSWORD + "x"},
                          "(a wrong password)")
        if wrong.json().get("error") != "invalid_credentials":
            raise SmokeFailure(f"a wrong password answered {wrong.text[:200]!r}")
        self.call("POST", "/signin", 200, {"login": self.email, "password": PASSWORD}, "(signed in)")
        self.call("GET", "/profile", 200, what="(the session works)")
        self.call("POST", "/forgot-password", 202, {"email": self.email}, "(a reset email queued)")
        self.call("POST", "/signout", 204, what="(signed out)")


@functools.cache
def outputs_of_stack(stack: str) -> dict[str, str]:
    """The stack's outputs by key (its table names, PortalUrl), read once, with the caller's AWS
    credentials and AWS_ENDPOINT_URL/AWS_REGION as the AWS SDKs read them."""
    import boto3

    (found,) = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    missing = [k for k in ("ContactsTableName", "SessionsTableName", "OutboxTableName", "PortalUrl")
               if k not in outputs]
    if missing:
        raise SmokeFailure(f"the stack {stack} has no output {', '.join(missing)}")
    return outputs


def follow_emails(stack: str, email: str, wait_secs: float) -> None:
    """Waits until every outbox message to `email` is `sent` (SES accepted it); SmokeFailure when
    one failed for good, or when they are not all sent within `wait_secs`. A message is found by
    the digest of its address (`recipient`): a settled message keeps no address."""
    import hashlib

    import boto3

    table = outputs_of_stack(stack)["OutboxTableName"]
    recipient = hashlib.sha256(email.lower().encode()).hexdigest()
    ddb = boto3.client("dynamodb")
    deadline = time.monotonic() + wait_secs
    while True:
        found, start = [], None
        while True:
            page = ddb.scan(TableName=table, FilterExpression="recipient = :recipient",
                            ExpressionAttributeNames={"#s": "status", "#k": "kind", "#e": "error"},
                            ExpressionAttributeValues={":recipient": {"S": recipient}},
                            ProjectionExpression="#s, #k, #e",
                            **({"ExclusiveStartKey": start} if start else {}))
            found += page["Items"]
            if not (start := page.get("LastEvaluatedKey")):
                break
        states = sorted((m["kind"]["S"], m["status"]["S"]) for m in found)
        failed = [m for m in found if m["status"]["S"] == "failed"]
        if failed:
            reasons = "; ".join(f"{m['kind']['S']}: {m.get('error', {}).get('S', '?')}" for m in failed)
            raise SmokeFailure(f"an email to the throwaway address failed for good ({reasons})")
        if found and all(state == "sent" for _, state in states):
            print(f"ok  emails sent (SES accepted them): {', '.join(kind for kind, _ in states)}")
            return
        if time.monotonic() > deadline:
            raise SmokeFailure(f"the emails to the throwaway address were not all sent within "
                               f"{wait_secs:.0f}s: {states or 'none queued'}")
        time.sleep(2)


def clean_up(stack: str, email: str, contact_id: str) -> None:
    """Delete the throwaway contact: its sessions, its email guard and the contact item."""
    import boto3

    tables = outputs_of_stack(stack)
    ddb = boto3.client("dynamodb")
    sessions = ddb.query(TableName=tables["SessionsTableName"], IndexName="by-contact",
                         KeyConditionExpression="contact_id = :c",
                         ExpressionAttributeValues={":c": {"S": contact_id}})["Items"]
    for session in sessions:
        ddb.delete_item(TableName=tables["SessionsTableName"], Key={"pk": session["pk"]})
    for pk in (f"EMAIL#{email.lower()}", f"CONTACT#{contact_id}"):
        ddb.delete_item(TableName=tables["ContactsTableName"], Key={"pk": {"S": pk}})
    print(f"ok  cleaned up: contact {contact_id}, its email guard, {len(sessions)} sessions")


def main() -> int:
    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--stack", help="the deployed stack: follow the emails, then delete the "
                        "throwaway account")
    parser.add_argument("--email-wait", type=float, default=120,
                        help="seconds to wait for the emails to be sent (with --stack; 120)")
    args = parser.parse_args()
    journey = Journey(args.url)
    print(f"smoke: {journey.base} with the throwaway account {journey.email}")
    status = 0
    try:
        if args.stack and (portal_url := outputs_of_stack(args.stack)["PortalUrl"].rstrip("/")) != journey.base:
            raise SmokeFailure(f"the stack's PortalUrl is {portal_url}, not {journey.base}: emailed "
                               "links and the origin check follow PortalUrl")
        journey.run()
        if args.stack:
            follow_emails(args.stack, journey.email, args.email_wait)
    except (SmokeFailure, requests.RequestException, ValueError, KeyError) as e:
        print(f"FAILED  {e}", file=sys.stderr)
        status = 1
    if journey.contact_id and args.stack:
        try:
            clean_up(args.stack, journey.email, journey.contact_id)
        except Exception as e:  # noqa: BLE001 - botocore's errors; say what is left
            print(f"FAILED  cleaning up {journey.email} ({journey.contact_id}): {e}", file=sys.stderr)
            status = 1
    elif journey.contact_id:
        print(f"note: the account {journey.email} ({journey.contact_id}) stays (no --stack to delete it)")
    print("smoke: passed" if status == 0 else "smoke: FAILED")
    return status


if __name__ == "__main__":
    sys.exit(main())
