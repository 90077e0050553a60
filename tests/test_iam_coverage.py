"""The IAM coverage check itself (scripts/aws_recorder.py, scripts/iam_coverage.py): what a
request needs, and the template's roles held against it. No stack: make test runs the check on
the calls the end-to-end suite recorded (the coverage itself) after the suite."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import aws_recorder  # noqa: E402
import iam_coverage  # noqa: E402
import local_aws  # noqa: E402

STACK = "pytest-iam"
AUTH = "AWS4-HMAC-SHA256 Credential=test/20261129/us-east-1/{}/aws4_request, SignedHeaders=host"
UA = "aws-sdk-rust/1.3 ua/2.1 api/dynamodb/1.136 os/linux lang/rust/1.95 app/{}"


def ddb(operation: str, body: dict, function: str = "sign-in") -> list[dict]:
    headers = {"Authorization": AUTH.format("dynamodb"), "User-Agent": UA.format(function),
               "X-Amz-Target": f"DynamoDB_20120810.{operation}"}
    caller = aws_recorder.caller_of(headers)
    return [{**caller, **found} for found in aws_recorder.actions_of_request(
        "POST", "/", headers, json.dumps(body).encode())]


def table(logical: str) -> str:
    return local_aws.Resolver(local_aws.load_template(), STACK).name_of(logical)


def run_check(calls: list[dict]) -> tuple[int, str]:
    out = io.StringIO()
    problems = iam_coverage.check({STACK: calls}, out=out)
    return problems, out.getvalue()


def test_a_transaction_needs_each_items_own_action():
    calls = ddb("TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "c", "Item": {}}}, {"Update": {"TableName": "i", "Key": {}}},
        {"Delete": {"TableName": "c", "Key": {}}}, {"ConditionCheck": {"TableName": "o", "Key": {}}}]})
    assert [(c["action"], c["table"]) for c in calls] == [
        ("dynamodb:PutItem", "c"), ("dynamodb:UpdateItem", "i"), ("dynamodb:DeleteItem", "c"),
        ("dynamodb:ConditionCheckItem", "o")]
    assert {c["function"] for c in calls} == {"sign-in"}


def test_a_query_on_an_index_names_the_index():
    (call,) = ddb("Query", {"TableName": "s", "IndexName": "by-contact"}, function="profile")
    assert (call["function"], call["action"], call["table"], call["index"]) == (
        "profile", "dynamodb:Query", "s", "by-contact")


def test_an_ses_v2_send_names_its_sender():
    headers = {"Authorization": AUTH.format("ses"), "User-Agent": UA.format("send-email")}
    (found,) = aws_recorder.actions_of_request("POST", "/v2/email/outbound-emails", headers,
                                               b'{"FromEmailAddress": "no-reply@example.com"}')
    assert found["action"] == "ses:SendEmail" and found["from"] == "no-reply@example.com"


def test_every_recorded_call_of_the_suite_needs_a_grant():
    # A grant the template lacks: sign-in reading the invitations table.
    problems, out = run_check(ddb("GetItem", {"TableName": table("InvitationsTable")}))
    assert problems >= 1
    assert "MISSING  sign-in" in out and "table/<stack>-invitations" in out


def test_a_granted_call_passes_and_the_rest_is_reported_unused():
    calls = ddb("GetItem", {"TableName": table("ContactsTable")})
    problems, out = run_check(calls)
    assert "ok       sign-in            dynamodb:GetItem" in out
    assert "UNUSED" in out
    # Every function must have made calls: here only sign-in did.
    assert "NO CALLS register" in out and problems >= 1


def test_send_email_may_read_the_invitations_table_and_send_only_from_the_sender():
    send = {"function": "send-email", "rust_sdk": True, "action": "ses:SendEmail"}
    calls = ddb("GetItem", {"TableName": table("InvitationsTable")}, function="send-email")
    calls.append({**send, "from": local_aws.LOCAL_PARAMETERS["EmailSender"]})
    _, out = run_check(calls)
    assert "ok       send-email         dynamodb:GetItem" in out
    assert "ok       send-email         ses:SendEmail" in out
    _, out = run_check([{**send, "from": "someone-else@example.com"}])
    assert "MISSING  send-email         ses:SendEmail" in out


def test_put_events_needs_the_grant_on_the_portals_bus_alone():
    headers = {"Authorization": AUTH.format("events"), "User-Agent": UA.format("send-email"),
               "X-Amz-Target": "AWSEvents.PutEvents"}
    body = {"Entries": [{"EventBusName": local_aws.LOCAL_EVENT_BUS, "Source": "portal"}]}
    calls = [{**aws_recorder.caller_of(headers), **found} for found in
             aws_recorder.actions_of_request("POST", "/", headers, json.dumps(body).encode())]
    assert [(c["action"], c["bus"]) for c in calls] == [("events:PutEvents", "portal-events")]
    _, out = run_check(calls)
    assert "ok       send-email         events:PutEvents" in out
    assert "event-bus/portal-events" in out
    # Another bus (the account's default) is not granted, nor is the grant another function's.
    _, out = run_check([{**calls[0], "bus": "default"}, {**calls[0], "function": "register"}])
    assert "MISSING  send-email         events:PutEvents" in out
    assert "MISSING  register           events:PutEvents" in out


def test_kms_calls_name_the_templates_key_through_its_alias():
    alias = local_aws.Resolver(local_aws.load_template(), STACK).resolve(
        local_aws.load_template()["Globals"]["Function"]["Environment"]["Variables"]["PORTAL_TOTP_KMS_KEY_ID"])
    headers = {"Authorization": AUTH.format("kms"), "User-Agent": UA.format("profile"),
               "X-Amz-Target": "TrentService.GenerateDataKey"}
    context = {"purpose": "portal-totp-secret", "contact_id": "c1"}
    body = json.dumps({"KeyId": alias, "EncryptionContext": context}).encode()
    (found,) = aws_recorder.actions_of_request("POST", "/", headers, body)
    assert found == {"action": "kms:GenerateDataKey", "key": alias, "encryption_context": context}
    seal = {"function": "profile", "rust_sdk": True, **found}
    _, out = run_check([seal])
    assert "ok       profile            kms:GenerateDataKey" in out and "TotpKey" in out, out
    # The grant holds only for TOTP secrets' data keys: another purpose, or none, is not granted.
    for other in ({"purpose": "something-else"}, {}):
        _, out = run_check([{**seal, "encryption_context": other}])
        assert "MISSING  profile            kms:GenerateDataKey" in out, out
    # Only the functions that seal or open a TOTP secret (profile; sign-in, redeem-invitation and
    # external-sign-in, which re-seal a secret sealed before it was bound to its contact) may use
    # the key.
    for function in ("sign-in", "external-sign-in"):
        _, out = run_check([{**seal, "function": function}])
        assert f"ok       {function:<18} kms:GenerateDataKey" in out, out
    for function in ("register", "create-invitation"):
        _, out = run_check([{**seal, "function": function}])
        assert f"MISSING  {function:<18} kms:GenerateDataKey" in out, out


def test_a_providers_client_secret_is_read_by_external_sign_in_alone_and_only_under_oidc():
    """GetSecretValue names the secret by (partial) ARN or name; IAM holds it against the full ARN.
    Only external-sign-in may read, and only the stack's `<stack>/oidc/*` secrets."""
    headers = {"Authorization": AUTH.format("secretsmanager"), "User-Agent": UA.format("external-sign-in"),
               "X-Amz-Target": "secretsmanager.GetSecretValue"}
    partial = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{STACK}/oidc/example"
    body = json.dumps({"SecretId": partial}).encode()
    (found,) = aws_recorder.actions_of_request("POST", "/", headers, body)
    assert found == {"action": "secretsmanager:GetSecretValue", "secret": partial}
    read = {**aws_recorder.caller_of(headers), **found}
    assert read["function"] == "external-sign-in"
    for secret_id in (partial, partial + "-AbCdEf", f"{STACK}/oidc/example"):
        assert iam_coverage.secret_arn(secret_id).startswith(partial + "-")
        _, out = run_check([{**read, "secret": secret_id}])
        assert "ok       external-sign-in   secretsmanager:GetSecretValue" in out, out
        assert "secret:<stack>/oidc/example-" in out, out
    # Another secret of the account, another stack's provider secret, another function: refused.
    for secret_id in (f"{STACK}/database", "other-stack/oidc/example", f"{STACK}-oidc/example"):
        _, out = run_check([{**read, "secret": secret_id}])
        assert "MISSING  external-sign-in   secretsmanager:GetSecretValue" in out, (secret_id, out)
    for function in ("sign-in", "profile", "redeem-invitation", "send-email"):
        _, out = run_check([{**read, "function": function}])
        assert f"MISSING  {function:<18} secretsmanager:GetSecretValue" in out, out


def test_external_sign_in_has_the_union_of_sign_in_and_redemption_grants():
    """What sign-in and redeem-invitation may do to the tables, external-sign-in may do too (it
    signs in, creates contacts and redeems invitations through the same door)."""
    calls = []
    for logical, actions in (("ContactsTable", ("GetItem", "PutItem", "UpdateItem", "DeleteItem")),
                             ("SessionsTable", ("GetItem", "PutItem", "UpdateItem", "DeleteItem")),
                             ("InvitationsTable", ("GetItem", "PutItem", "UpdateItem")),
                             ("OutboxTable", ("PutItem",)), ("AuditTable", ("PutItem",))):
        for action in actions:
            calls += ddb(action, {"TableName": table(logical)}, function="external-sign-in")
    problems, out = run_check(calls)
    assert "MISSING" not in out, out
    # Not the admin's reads: the invitations' and the audit trail's indexes.
    _, out = run_check(ddb("Query", {"TableName": table("AuditTable"), "IndexName": "by-time"},
                           function="external-sign-in"))
    assert "MISSING  external-sign-in   dynamodb:Query" in out, out


def test_a_rust_sdk_call_without_an_app_id_is_a_problem():
    call = {"function": None, "rust_sdk": True, "action": "dynamodb:GetItem", "table": "x"}
    problems, out = run_check([call])
    assert problems >= 1 and "UNATTRIBUTED" in out


@pytest.mark.parametrize("pattern,value,expected", [
    ("arn:aws:dynamodb:*:*:table/t/index/*", "arn:aws:dynamodb:r:1:table/t/index/by-contact", True),
    ("arn:aws:dynamodb:*:*:table/t", "arn:aws:dynamodb:r:1:table/t/index/by-contact", False),
    ("arn:aws:ses:r:1:identity/*", "arn:aws:ses:r:1:identity/a@b.c", True),
])
def test_resources_match_as_iam_matches_them(pattern, value, expected):
    assert iam_coverage.wildcard(pattern, value) is expected


def test_an_email_needs_the_sender_identity_and_the_configuration_set():
    send = {"function": "send-email", "rust_sdk": True, "action": "ses:SendEmail",
            "from": local_aws.LOCAL_PARAMETERS["EmailSender"]}
    _, out = run_check([send])
    lines = [line for line in out.splitlines() if "ses:SendEmail" in line]
    assert any(line.startswith("ok") and ":identity/" in line for line in lines), out
    assert any(line.startswith("ok") and ":configuration-set/<stack>-EmailConfigurationSet" in line
               for line in lines), out
    # A function whose role grants neither is missing both.
    _, out = run_check([{**send, "function": "register"}])
    missing = [line for line in out.splitlines() if line.startswith("MISSING") and "ses:SendEmail" in line]
    assert len(missing) == 2, out


def test_the_roles_are_read_from_sams_own_translation():
    """The roles are not copied into the check: they come from the SAM translator's output
    (scripts/sam_translate.py), so what is held against the calls is what the stack gets: a role of
    the template's own, or whatever a SAM release would make and attach for a function without one."""
    translated = iam_coverage.sam_translated()["Resources"]
    resolver = iam_coverage.Resolver(local_aws.load_template(), STACK)
    role = iam_coverage.Role("SignInFunction", resolver)
    assert role.role_id == "SignInRole"
    origins = {origin for origin, _ in role.statements}
    assert origins == {"SignInRole/sign-in"}, origins
    policies = translated["SignInRole"]["Properties"]["Policies"]
    sids = [st.get("Sid") for p in policies for st in p["PolicyDocument"]["Statement"]]
    assert [st.get("Sid") for _, st in role.statements] == sids
    # The local stack's parameters: tracing off, so no X-Ray write access (issue 19); with it on,
    # the managed policy the role attaches then.
    traced = iam_coverage.sam_translated(Tracing="true")
    role = iam_coverage.Role("SignInFunction", iam_coverage.Resolver(
        local_aws.load_template(), STACK, {"Tracing": "true"}), traced)
    assert "managed AWSXrayWriteOnlyAccess" in {origin for origin, _ in role.statements}


def test_a_role_sam_makes_is_read_with_the_managed_policies_it_attaches():
    """A function without a role of the template's own runs with SAM's `<Function>Role`: its
    inline policies and its AWS managed policies (expanded as AWS publishes them) are held."""
    translated = {"Resources": {
        "XFunction": {"Type": "AWS::Lambda::Function",
                      "Properties": {"Role": {"Fn::GetAtt": ["XFunctionRole", "Arn"]}}},
        "XFunctionRole": {"Type": "AWS::IAM::Role", "Properties": {
            "ManagedPolicyArns": ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
            "Policies": [{"PolicyName": "XFunctionRolePolicy0", "PolicyDocument": {"Statement": [
                {"Sid": "Read", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": "arn:t"}]}}]}}}}
    role = iam_coverage.Role("XFunction", iam_coverage.Resolver(local_aws.load_template(), STACK), translated)
    assert role.role_id == "XFunctionRole"
    assert role.allowing("dynamodb:GetItem", "arn:t", {})[0][0] == "XFunctionRole/XFunctionRolePolicy0"
    assert role.allowing("logs:PutLogEvents", "arn:any", {})[0][0] == "managed AWSLambdaBasicExecutionRole"
