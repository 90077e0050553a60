"""The local stack's Python side, without the Rust build: the template as the stack reads it, the
resources it creates on moto, `make emails`, the stream filter (FilterCriteria) and the stream
relay's batching, partial failures, bisection, retries and OnFailure queue (against a fake
function served here)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

import local_aws
import stream_relay
from conftest import ROOT, free_port, stack_script

KW = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


# --- the template ---------------------------------------------------------------------------------

def test_template_is_read_with_its_short_tags_in_long_form():
    template = local_aws.load_template()
    policy = template["Resources"]["OutboxTable"]["Properties"]["DeletionProtectionEnabled"]
    assert policy == {"Fn::If": ["ProtectTables", True, False]}
    event = template["Resources"]["SendEmailFunction"]["Properties"]["Events"]["OutboxStream"]
    assert event["Properties"]["Stream"] == {"Fn::GetAtt": ["OutboxTable", "StreamArn"]}
    assert template["Conditions"]["HasAwsEndpointUrl"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AwsEndpointUrl"}, ""]}]}


def test_plan_resolves_tables_settings_identities_and_the_stream_source():
    plan = stack_script.Plan("demo", 9100, 4610, settings={
        "PORTAL_REQUIRE_CONFIRMATION": "true", "PORTAL_EMAIL_SENDER": "hello@example.org",
        "NOT_A_SETTING": "x", "PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS": "86400"})
    assert plan.tables == {"ContactsTable": "demo-contacts", "SessionsTable": "demo-sessions",
                           "InvitationsTable": "demo-invitations", "OutboxTable": "demo-outbox",
                           "AuditTable": "demo-audit"}
    env = plan.env
    assert env["PORTAL_OUTBOX_TABLE"] == "demo-outbox"
    assert env["PORTAL_REQUIRE_CONFIRMATION"] == "true"
    assert env["PORTAL_OPEN_REGISTRATION"] == "true"  # the parameter's default
    assert env["PORTAL_PASSWORD_MIN_LENGTH"] == "12"
    assert env["PORTAL_INVITATION_EMAIL_SUBJECT"] == "You're invited to the customer portal"
    assert env["PORTAL_BASE_URL"] == "http://localhost:9100"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4610"
    assert env["AWS_REGION"] == "us-east-1"
    assert "NOT_A_SETTING" not in env
    assert env["PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS"] == "86400"  # a test-only setting
    # The sender's SES identity follows the setting (it is the EmailSender parameter).
    assert plan.resolver.resolve(plan.template["Resources"]["SenderIdentity"]["Properties"])[
        "EmailIdentity"] == "hello@example.org"
    # external-sign-in has GET routes with a path parameter only: one stands in for it.
    assert plan.warm_paths == {"sign-in": "/signin", "register": "/register", "profile": "/",
                               "create-invitation": "/admin/contacts", "redeem-invitation": "/redeem",
                               "external-sign-in": "/signin/external/warm-up"}
    # A prebuilt stack builds every function of the template.
    assert plan.binaries == {"sign-in", "register", "profile", "create-invitation",
                             "redeem-invitation", "external-sign-in", "send-email", "email-feedback"}
    assert plan.stream_sources == [{
        "function": "send-email", "table": "demo-outbox", "batch_size": 10,
        "report_failures": True, "max_retries": 5, "bisect": True,
        "filters": [{"eventName": ["INSERT"]}], "on_failure_queue": "demo-SendEmailFailuresQueue"}]


def test_the_providers_setting_reaches_the_functions_as_json():
    """PORTAL_OIDC_PROVIDERS is the OidcProviders parameter: given as a setting (text, or a list
    that the stack writes as JSON), it replaces the default []; not given, the default stays."""
    providers = [{"id": "example", "name": "Example ID", "issuer": "http://localhost:9400",
                  "client_id": "portal", "client_secret_arn": local_aws.secret_arn(
                      "demo/oidc/example"), "scopes": ["openid", "email", "profile"]}]
    assert stack_script.Plan("demo", 9100, 4610).env["PORTAL_OIDC_PROVIDERS"] == "[]"
    for given in (providers, json.dumps(providers)):
        env = stack_script.Plan("demo", 9100, 4610, settings={"PORTAL_OIDC_PROVIDERS": given}).env
        assert json.loads(env["PORTAL_OIDC_PROVIDERS"]) == providers
    assert providers[0]["client_secret_arn"] == (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:demo/oidc/example")


def test_resolver_evaluates_the_intrinsics_the_template_uses():
    template = local_aws.load_template()
    r = local_aws.Resolver(template, "demo", {"CreateSenderIdentity": "false"})
    assert r.resolve({"Ref": "OutboxTable"}) == "demo-outbox"
    assert r.resolve({"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}"}) == "arn:aws:ses:us-east-1"
    assert r.name_of("SendEmailFailuresQueue") == "demo-SendEmailFailuresQueue"
    assert r.resolve({"A": {"Fn::If": ["HasAwsEndpointUrl", "x", {"Ref": "AWS::NoValue"}]}}) == {}
    assert not list(r.resources_of_type("AWS::SES::EmailIdentity"))  # its Condition is false


# --- resources on moto, emails ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def moto_server():
    """`scripts/local_aws.py serve` (moto with the workarounds) on a free port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "local_aws.py"), "serve",
                             "--port", str(port), "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    yield f"http://127.0.0.1:{port}"
    proc.stdin.close()
    proc.wait(timeout=20)


@pytest.mark.parametrize("how", ["stdin closes", "SIGTERM"])
def test_serve_stops_cleanly_when_its_stdin_closes_or_on_sigterm(how):
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "local_aws.py"), "serve",
                             "--port", str(free_port()), "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    proc.stdin.close() if how == "stdin closes" else proc.terminate()
    assert proc.wait(timeout=20) == 0, proc.stderr.read().decode()[-2000:]
    assert b"Fatal" not in proc.stderr.read()


def test_serve_refuses_a_port_in_use(moto_server):
    port = moto_server.rsplit(":", 1)[1]
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "local_aws.py"), "serve",
                             "--port", port], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "already in use" in result.stderr


def test_create_tables_makes_the_templates_tables_once(moto_server):
    run = [sys.executable, str(ROOT / "scripts" / "local_aws.py"), "create-tables",
           "--endpoint-url", moto_server, "--stack-name", "ct1", "--stack-name", "ct2"]
    first = subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
    assert sorted(first.stdout.split()) == sorted(
        f"{s}-{t}" for s in ("ct1", "ct2") for t in ("contacts", "sessions", "invitations", "outbox", "audit"))
    subprocess.run(run, capture_output=True, timeout=60, check=True)  # again: left alone
    ddb = boto3.client("dynamodb", endpoint_url=moto_server, **KW)
    outbox = ddb.describe_table(TableName="ct1-outbox")["Table"]
    assert outbox["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert outbox["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    sessions = ddb.describe_table(TableName="ct2-sessions")["Table"]
    assert [i["IndexName"] for i in sessions["GlobalSecondaryIndexes"]] == ["by-contact"]
    assert ddb.describe_time_to_live(TableName="ct2-contacts")["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    sqs = boto3.client("sqs", endpoint_url=moto_server, **KW)
    assert sqs.get_queue_url(QueueName="ct1-SendEmailFailuresQueue")["QueueUrl"]
    ses = boto3.client("sesv2", endpoint_url=moto_server, **KW)
    assert "no-reply@example.com" in [i["IdentityName"] for i in ses.list_email_identities()[
        "EmailIdentities"]]


def test_secrets_are_made_and_read_by_name_or_partial_arn(moto_server):
    """A provider's client secret on the local endpoint, as an operator makes it in AWS; a second
    put gives it a new value. GetSecretValue takes the partial ARN a provider's entry names."""
    name = "demo-secrets/oidc/example"
    arns = local_aws.put_secrets(moto_server, {name: "first"})
    assert arns[name].startswith(local_aws.secret_arn(name) + "-")
    assert local_aws.put_secrets(moto_server, {name: "second"}) == arns
    sm = boto3.client("secretsmanager", endpoint_url=moto_server, **KW)
    assert sm.get_secret_value(SecretId=local_aws.secret_arn(name))["SecretString"] == "second"
    assert local_aws.put_secrets(moto_server, {}) == {}


def test_sent_emails_and_the_emails_command(moto_server):
    # What the portal sends: SES v2 SendEmail with simple content and a text body.
    ses = boto3.client("sesv2", endpoint_url=moto_server, **KW)
    ses.create_email_identity(EmailIdentity="from@example.com")
    ses.send_email(FromEmailAddress="from@example.com", Destination={"ToAddresses": ["a@example.com"]},
                   Content={"Simple": {"Subject": {"Data": "Plain one"},
                                       "Body": {"Text": {"Data": "Hello\nhttp://x/y?token=1"}}}})
    emails = {m["subject"]: m for m in local_aws.sent_emails(moto_server)}
    assert emails["Plain one"]["to"] == ["a@example.com"]
    assert emails["Plain one"]["from"] == "from@example.com"
    assert emails["Plain one"]["body"] == "Hello\nhttp://x/y?token=1"
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "local_aws.py"), "emails",
                          "--endpoint-url", moto_server], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "To:      a@example.com\nSubject: Plain one\n\nHello\nhttp://x/y?token=1" in out


def test_emails_are_read_from_an_index_on_without_the_state_dump(moto_server, monkeypatch):
    ses = boto3.client("sesv2", endpoint_url=moto_server, **KW)
    ses.create_email_identity(EmailIdentity="from@example.com")
    before = len(local_aws.sent_emails(moto_server))
    for subject in ("first", "second"):
        ses.send_email(FromEmailAddress="from@example.com",
                       Destination={"ToAddresses": [f"{subject}@example.com"]},
                       Content={"Simple": {"Subject": {"Data": subject},
                                           "Body": {"Text": {"Data": "text"}}}})
    asked = []
    real_urlopen = local_aws.urllib.request.urlopen
    monkeypatch.setattr(local_aws.urllib.request, "urlopen",
                        lambda url, **kw: asked.append(url) or real_urlopen(url, **kw))
    assert [m["subject"] for m in local_aws.sent_emails(moto_server)[before:]] == [
        "first", "second"]
    assert [m["to"] for m in local_aws.sent_emails(moto_server, since=before + 1)] == [
        ["second@example.com"]]
    assert local_aws.sent_emails(moto_server, since=before + 2) == []
    assert asked and not any("data.json" in url for url in asked), asked


def test_events_are_read_from_the_tap_queue_and_stay_there(moto_server):
    local_aws.create_event_bus(moto_server)
    events = boto3.client("events", endpoint_url=moto_server, **KW)
    before = len(local_aws.published_events(moto_server))
    events.put_events(Entries=[
        {"EventBusName": local_aws.LOCAL_EVENT_BUS, "Source": "portal", "DetailType": "First",
         "Detail": json.dumps({"n": 1})},
        {"EventBusName": local_aws.LOCAL_EVENT_BUS, "Source": "elsewhere", "DetailType": "Other",
         "Detail": "{}"},
        {"EventBusName": local_aws.LOCAL_EVENT_BUS, "Source": "portal", "DetailType": "Second",
         "Detail": json.dumps({"n": 2})}])
    # Someone receiving from the tap queue takes nothing from what the listing shows.
    sqs = boto3.client("sqs", endpoint_url=moto_server, **KW)
    queue = sqs.get_queue_url(QueueName=local_aws.EVENT_TAP_QUEUE)["QueueUrl"]
    assert sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    found = local_aws.published_events(moto_server)[before:]
    assert [(e["detail-type"], e["source"], e["detail"]) for e in found] == [
        ("First", "portal", {"n": 1}), ("Second", "portal", {"n": 2})]
    assert [e["detail-type"] for e in local_aws.published_events(moto_server, since=before + 1)] \
        == ["Second"]
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "local_aws.py"), "events",
                          "--endpoint-url", moto_server], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert f"Second  {found[1]['time']}  {{\"n\": 2}}" in out, out


def test_emails_command_says_when_the_stack_is_not_running():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "local_aws.py"), "emails",
                             "--endpoint-url", f"http://127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "make run" in result.stderr


# --- stream filtering (Lambda's FilterCriteria) -----------------------------------------------------

RECORD = {"eventName": "INSERT", "eventSourceARN": "arn:aws:dynamodb:x:1:table/t/stream/s",
          "dynamodb": {"Keys": {"pk": {"S": "OUT#1"}}, "SizeBytes": 42,
                       "NewImage": {"pk": {"S": "OUT#1"}, "kind": {"S": "invitation"},
                                    "tags": {"L": [{"S": "a"}]}, "n": {"N": "3"}}}}


@pytest.mark.parametrize("pattern, matches", [
    ({"eventName": ["INSERT"]}, True),
    ({"eventName": ["MODIFY", "REMOVE"]}, False),
    ({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["invitation"]}}}}, True),
    ({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["reset"]}}}}, False),
    ({"dynamodb": {"NewImage": {"kind": {"S": [{"prefix": "inv"}]}}}}, True),
    ({"dynamodb": {"NewImage": {"kind": {"S": [{"suffix": "tion"}]}}}}, True),
    ({"dynamodb": {"NewImage": {"kind": {"S": [{"equals-ignore-case": "INVITATION"}]}}}}, True),
    ({"eventName": [{"anything-but": ["REMOVE"]}]}, True),
    ({"eventName": [{"anything-but": "INSERT"}]}, False),
    ({"dynamodb": {"SizeBytes": [{"numeric": [">", 10, "<=", 42]}]}}, True),
    ({"dynamodb": {"SizeBytes": [{"numeric": [">", 42]}]}}, False),
    ({"dynamodb": {"NewImage": {"kind": {"S": [{"exists": True}]}}}}, True),
    ({"dynamodb": {"NewImage": {"absent": {"S": [{"exists": False}]}}}}, True),
    ({"dynamodb": {"NewImage": {"absent": {"S": [{"exists": True}]}}}}, False),
    ({"dynamodb": {"NewImage": {"absent": {"S": ["x"]}}}}, False),
    ({"dynamodb": {"Keys": {"pk": {"S": ["OUT#1"]}}}}, True),
    ({"eventName": ["insert"]}, False),  # values are case-sensitive
    ({"$or": [{"eventName": ["MODIFY"]}, {"dynamodb": {"SizeBytes": [42]}}]}, True),
])
def test_a_filter_pattern_matches_as_lambda_does(pattern, matches):
    assert stream_relay.record_passes_filters([pattern], RECORD) is matches


def test_no_filters_pass_everything_and_any_one_matching_filter_is_enough():
    assert stream_relay.record_passes_filters([], RECORD)
    assert stream_relay.record_passes_filters(
        [{"eventName": ["REMOVE"]}, {"eventName": ["INSERT"]}], RECORD)
    assert not stream_relay.record_passes_filters(
        [{"eventName": ["REMOVE"]}, {"eventName": ["MODIFY"]}], RECORD)


@pytest.mark.parametrize("raw", ['["INSERT"]', '{"eventName": "INSERT"}', '{"eventName": []}',
                                 '{"eventName": [{"wildcard": "IN*"}]}', 'not json', '{}'])
def test_a_pattern_lambda_would_refuse_stops_the_stack_with_a_message(raw):
    with pytest.raises(stack_script.StackError, match="filter"):
        stream_relay.parse_filters({"Filters": [{"Pattern": raw}]}, "the test's event")


# --- the stream relay -------------------------------------------------------------------------------

class FakeFunction:
    """A stream-triggered function behind cargo lambda's invoke API; `answer(batch)` decides what
    it answers: a dict (its JSON result) or an int (an HTTP error status)."""

    def __init__(self, answer):
        self.answer, self.batches = answer, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["Records"]
                fake.batches.append(batch)
                result = fake.answer(batch)
                body = (json.dumps(result) if isinstance(result, dict) else "boom").encode()
                self.send_response(200 if isinstance(result, dict) else result)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys(self, batch=None):
        return [r["dynamodb"]["Keys"]["pk"]["S"] for r in (batch or
                                                           [r for b in self.batches for r in b])]


class QuickEvent(threading.Event):
    """The relay waits on its stack's stopping event: here its back-off takes a twentieth."""

    def wait(self, timeout=None):
        return super().wait(None if timeout is None else timeout / 20)


@contextlib.contextmanager
def relay_running(endpoint, answer, writes, **settings):
    """A StreamRelay to a FakeFunction(answer) on a fresh table whose stream holds `writes` (a
    key: a put; "-key": a delete) before it starts; yields (relay, fake, the table's name)."""
    table = f"relay{time.monotonic_ns()}"
    local_aws.create_resources(endpoint, local_aws.Resolver(local_aws.load_template(), table))
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, **KW)
    fake = FakeFunction(answer)
    fake_stack = types.SimpleNamespace(portal_port=fake.port, aws_endpoint=endpoint,
                                       _stopping=QuickEvent())
    boto3.client("sqs", endpoint_url=endpoint, **KW).create_queue(QueueName=table)
    for key in writes:  # all before the relay starts (at the stream's start): fixed batches
        if key.startswith("-"):
            ddb.delete_item(TableName=f"{table}-outbox", Key={"pk": {"S": key[1:]}})
        else:
            ddb.put_item(TableName=f"{table}-outbox", Item={"pk": {"S": key}})
    relay = stream_relay.StreamRelay(fake_stack, "fake", f"{table}-outbox",
                                     on_failure_queue=table, **settings)
    relay.start()
    try:
        yield relay, fake, table
    finally:
        fake_stack._stopping.set()
        relay.join(timeout=10)
        fake.server.shutdown()


def run_relay(endpoint, answer, writes, until, **settings):
    with relay_running(endpoint, answer, writes, **settings) as (relay, fake, table):
        deadline = time.monotonic() + 30
        while not until(relay, fake) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.wait_settled(30), "nothing more should come"
    sqs = boto3.client("sqs", endpoint_url=endpoint, **KW)
    queue_url = sqs.get_queue_url(QueueName=table)["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return relay, fake, [json.loads(m["Body"]) for m in messages]


def test_relay_settles_once_every_record_written_before_is_delivered_retries_included(moto_server):
    failures_left = {"b": 2, "z": 1000}

    def answer(batch):
        for r in batch:
            key = r["dynamodb"]["Keys"]["pk"]["S"]
            if failures_left.get(key):
                failures_left[key] -= 1
                return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    with relay_running(moto_server, answer, ["a", "b"], report_failures=True,
                       max_retries=1000) as (relay, fake, table):
        assert relay.wait_settled(30)
        assert fake.keys() == ["a", "b", "b", "b"] and relay.delivered == 2
        ddb = boto3.client("dynamodb", endpoint_url=moto_server, **KW)
        ddb.put_item(TableName=f"{table}-outbox", Item={"pk": {"S": "c"}})
        assert relay.wait_settled(30)
        assert fake.keys()[-1] == "c" and relay.delivered == 3
        # A record that keeps failing is still to deliver: not settled.
        ddb.put_item(TableName=f"{table}-outbox", Item={"pk": {"S": "z"}})
        assert not relay.wait_settled(1)
        assert fake.keys().count("z") >= 2 and relay.delivered == 3


def test_relay_sends_filtered_records_in_batches_in_order(moto_server):
    keys = [f"k{i}" for i in range(7)]
    relay, fake, failed = run_relay(
        moto_server, lambda batch: {"batchItemFailures": []}, keys + ["-k0"],
        until=lambda relay, fake: relay.delivered >= 7, batch_size=3, report_failures=True,
        filters=[{"eventName": ["INSERT"]}])
    assert [len(b) for b in fake.batches] == [3, 3, 1]
    assert fake.keys() == keys  # the REMOVE of k0 was filtered out
    record = fake.batches[0][0]
    assert record["eventName"] == "INSERT"
    assert record["eventSourceARN"] == relay.stream_arn and "/stream/" in relay.stream_arn
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int)
    assert record["dynamodb"]["NewImage"] == {"pk": {"S": "k0"}}
    assert "SizeBytes" in record["dynamodb"]
    assert (relay.delivered, relay.discarded, relay.invocations, failed) == (7, 0, 3, [])


def test_relay_retries_from_the_first_reported_failure(moto_server):
    failed_once = set()

    def answer(batch):
        for r in batch:
            key = r["dynamodb"]["Keys"]["pk"]["S"]
            if key in ("b", "d") and key not in failed_once:
                failed_once.add(key)
                return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    relay, fake, failed = run_relay(moto_server, answer, ["a", "b", "c", "d"],
                                    until=lambda relay, fake: relay.delivered >= 4,
                                    batch_size=10, report_failures=True)
    assert [fake.keys(b) for b in fake.batches] == [["a", "b", "c", "d"], ["b", "c", "d"],
                                                    ["d"]]
    assert (relay.delivered, relay.discarded, failed) == (4, 0, [])


def test_relay_without_reported_failures_takes_the_answer_as_success(moto_server):
    relay, fake, failed = run_relay(
        moto_server, lambda batch: {"batchItemFailures": [{"itemIdentifier": "x"}]}, ["a", "b"],
        until=lambda relay, fake: relay.delivered >= 2, report_failures=False)
    assert fake.keys() == ["a", "b"] and relay.delivered == 2 and failed == []


def test_relay_treats_an_unknown_reported_identifier_as_a_failed_batch(moto_server):
    relay, fake, failed = run_relay(
        moto_server, lambda batch: {"batchItemFailures": [{"itemIdentifier": "nope"}]}, ["a"],
        until=lambda relay, fake: relay.discarded >= 1, report_failures=True, max_retries=1)
    assert fake.keys() == ["a", "a"] and relay.delivered == 0
    assert failed[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_relay_bisects_a_failing_batch_and_sends_the_poison_record_to_the_queue(moto_server):
    def answer(batch):
        return 500 if "poison" in [r["dynamodb"]["Keys"]["pk"]["S"] for r in batch] else {}

    relay, fake, failed = run_relay(
        moto_server, answer, ["a", "b", "poison", "c"],
        until=lambda relay, fake: relay.delivered + relay.discarded >= 4,
        batch_size=4, bisect=True, max_retries=3)
    sizes = [len(b) for b in fake.batches]
    assert sizes[:3] == [4, 2, 2]  # halved after the first error, then whole halves
    assert relay.delivered == 3 and relay.discarded == 1
    assert sorted(set(fake.keys()) - {"poison"}) == ["a", "b", "c"]
    assert fake.keys(fake.batches[-1]) == ["c"]  # the rest goes on after the discard
    (message,) = failed
    info = message["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == relay.stream_arn
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 4
    assert message["requestContext"]["functionArn"].endswith(":function:fake")
    assert message["responseContext"]["functionError"] == "Unhandled"


def test_relay_without_bisection_retries_the_whole_batch(moto_server):
    relay, fake, failed = run_relay(
        moto_server, lambda batch: 500, ["a", "b"],
        until=lambda relay, fake: relay.discarded >= 2, batch_size=2, max_retries=2)
    assert [fake.keys(b) for b in fake.batches] == [["a", "b"]] * 3
    assert relay.discarded == 2 and failed[0]["DDBStreamBatchInfo"]["batchSize"] == 2
