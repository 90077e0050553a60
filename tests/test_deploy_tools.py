"""The deploy path's tools, proven on the local stack: `portal-admin create-admin --stack` reads
the table names from a CloudFormation stack's outputs, and `make smoke` (scripts/smoke.py) walks
the HTTP journey with a throwaway account and deletes it. The stack here is a CloudFormation stack
created in moto whose outputs are the local tables, as infra/template.yaml's outputs name them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT
from support import Portal, strong_password, unique_email

sys.path.insert(0, str(ROOT / "scripts"))
import local_aws  # noqa: E402

OUTPUTS = {"ContactsTableName": "ContactsTable", "SessionsTableName": "SessionsTable",
           "InvitationsTableName": "InvitationsTable", "OutboxTableName": "OutboxTable",
           "AuditTableName": "AuditTable"}


@pytest.fixture(scope="module")
def deployed(stack):
    """The name of a CloudFormation stack (in moto) whose outputs name the local stack's tables."""
    name = f"portal-deployed-{uuid.uuid4().hex[:8]}"
    outputs = {key: {"Value": stack.tables[logical]} for key, logical in OUTPUTS.items()}
    outputs["PortalUrl"] = {"Value": stack.portal_url}
    template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue"}}, "Outputs": outputs}
    local_aws.client("cloudformation", stack.aws_endpoint).create_stack(
        StackName=name, TemplateBody=json.dumps(template))
    return name


def aws_env(stack) -> dict:
    """The operator's environment: AWS endpoint and credentials, and no table variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PORTAL_"))}
    env.update(AWS_ENDPOINT_URL=stack.aws_endpoint, AWS_REGION=local_aws.REGION,
               AWS_DEFAULT_REGION=local_aws.REGION, AWS_ACCESS_KEY_ID="test",
               AWS_SECRET_ACCESS_KEY="test")
    return env


def create_admin(stack, email: str, password: str, stack_name: str):
    return subprocess.run(
        ["cargo", "run", "-q", "--bin", "portal-admin", "--", "create-admin", "--email", email,
         "--stack", stack_name], cwd=ROOT, env=aws_env(stack), input=password + "\n",
        capture_output=True, text=True, timeout=900, check=False)


def test_create_admin_finds_the_tables_in_the_stack_outputs(stack, base_url, deployed):
    email, password = unique_email("operator"), strong_password()
    done = create_admin(stack, email, password, deployed)
    assert done.returncode == 0, done.stderr
    r = Portal(base_url).signin(email, password)
    assert r.status_code == 200, r.text
    assert "Administrators" in r.json()["roles"]


def test_create_admin_names_a_stack_it_cannot_read(stack):
    done = create_admin(stack, unique_email("operator"), strong_password(), "no-such-stack")
    assert done.returncode != 0
    assert "no-such-stack" in done.stderr and "DescribeStacks" in done.stderr


def test_smoke_walks_the_journey_and_deletes_its_account(stack, base_url, deployed):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "smoke.py"), base_url,
                           "--stack", deployed], env=aws_env(stack), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke: passed" in done.stdout and "cleaned up" in done.stdout
    # The reset email it asked for was followed to `sent` in the outbox (SES accepted it).
    sent = next(line for line in done.stdout.splitlines() if "emails sent (SES accepted them)" in line)
    assert "reset_request" in sent, sent
    email = next(word for word in done.stdout.split() if word.startswith("success+smoke-"))
    contacts = local_aws.client("dynamodb", stack.aws_endpoint)
    guard = contacts.get_item(TableName=stack.tables["ContactsTable"],
                              Key={"pk": {"S": f"EMAIL#{email.lower()}"}})
    assert "Item" not in guard, "the throwaway account's email guard is still there"
    assert Portal(base_url).signin(email, "anything at all here").status_code == 401
    # Its registration's event says it is a test's, for consumers to drop (the throwaway address is
    # on SES's mailbox simulator); no other event does.
    deadline = time.monotonic() + 30
    while True:
        events = local_aws.published_events(stack.aws_endpoint)
        smoke_events = [e for e in events if e["detail"].get("smoke")]
        if smoke_events:
            break
        assert time.monotonic() < deadline, "no event of the smoke run says smoke: true"
        time.sleep(0.3)
    assert {e["detail-type"] for e in smoke_events} == {"ContactRegistered"}
    assert all(e["detail"]["smoke"] is True for e in smoke_events)


def smoke(stack, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "smoke.py"), url, *args],
                          env=aws_env(stack), capture_output=True, text=True, timeout=300,
                          check=False)


def test_smoke_fails_where_browsers_would_at_an_address_that_is_not_the_base_url(stack, deployed):
    """The same portal reached at another address (127.0.0.1 for localhost): its POSTs carry that
    origin, which the portal refuses, as it would refuse every form of a browser there."""
    elsewhere = stack.portal_url.replace("localhost", "127.0.0.1")
    done = smoke(stack, elsewhere)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "POST /register -> 403" in done.stderr, done.stderr
    # With the stack named, its PortalUrl output says so before anything is sent.
    done = smoke(stack, elsewhere, "--stack", deployed)
    assert done.returncode == 1 and "the stack's PortalUrl is" in done.stderr, done.stderr
    assert "POST" not in done.stdout
