"""The sample events in events/: well-formed API Gateway HTTP API (payload 2.0) events, events of the
other front ends lambda_http knows (REST API, function URL, ALB), and DynamoDB stream batches, every
one listed in events/manifest.json, and each answering what the manifest expects when invoked in
order with `cargo lambda invoke` against a freshly started stack.

The manifest is a list of entries {"function", "file"} plus an optional "shape" ("rest-api",
"function-url" or "alb"; an HTTP API event without it), and either
  "status": <int>   for an HTTP function: the invoke's statusCode, or
  "expect": {...}   for a stream-triggered function: the invoke's whole JSON answer (send-email
                    answers a DynamoDbEventResponse, e.g. {"batchItemFailures": []})."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Portal,
    describe,
    invoke_function,
    outbox_stream_records,
    unique_email,
)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
MANIFEST = json.loads((EVENTS / "manifest.json").read_text())
CARGO_LAMBDA = ROOT / ".venv" / "bin" / "cargo-lambda"
HTTP_FUNCTIONS = {"sign-in", "register", "profile", "create-invitation", "redeem-invitation",
                  "external-sign-in"}
STREAM_FUNCTIONS = {"send-email"}
# SNS subscribers: Lambda invokes them asynchronously and keeps no answer (theirs is null).
NOTIFICATION_FUNCTIONS = {"email-feedback"}
FUNCTIONS = HTTP_FUNCTIONS | STREAM_FUNCTIONS | NOTIFICATION_FUNCTIONS

# The contract's routes (API Gateway route keys, with path parameters as {name}).
ROUTES = {
    ("GET", "/"): "profile",
    ("GET", "/profile"): "profile",
    ("POST", "/profile"): "profile",
    ("POST", "/profile/password"): "profile",
    ("GET", "/signin"): "sign-in",
    ("POST", "/signin"): "sign-in",
    ("POST", "/signout"): "sign-in",
    ("GET", "/forgot-password"): "sign-in",
    ("POST", "/forgot-password"): "sign-in",
    ("GET", "/reset-password"): "sign-in",
    ("POST", "/reset-password"): "sign-in",
    ("GET", "/register"): "register",
    ("POST", "/register"): "register",
    ("GET", "/confirm-email"): "register",
    ("POST", "/confirm-email"): "register",
    ("GET", "/redeem"): "redeem-invitation",
    ("POST", "/redeem"): "redeem-invitation",
    ("GET", "/admin/contacts"): "create-invitation",
    ("POST", "/admin/contacts"): "create-invitation",
    ("POST", "/admin/invitations"): "create-invitation",
    ("GET", "/admin/invitations"): "create-invitation",
    ("GET", "/admin/invitations/{id}"): "create-invitation",
    ("POST", "/admin/invitations/{id}/resend"): "create-invitation",
    ("POST", "/admin/invitations/{id}/revoke"): "create-invitation",
    ("GET", "/profile/passkeys"): "profile",
    ("POST", "/profile/passkeys/register/start"): "profile",
    ("POST", "/profile/passkeys/register/finish"): "profile",
    ("POST", "/profile/passkeys/{id}/delete"): "profile",
    ("GET", "/signin/passkey.js"): "sign-in",
    ("POST", "/signin/passkey/start"): "sign-in",
    ("POST", "/signin/passkey/finish"): "sign-in",
    ("GET", "/signin/external/{provider}"): "external-sign-in",
    ("GET", "/signin/external/{provider}/callback"): "external-sign-in",
    ("POST", "/redeem/external/{provider}"): "external-sign-in",
    ("POST", "/profile/identities/{provider}/link"): "external-sign-in",
    ("GET", "/profile/identities"): "profile",
    ("POST", "/profile/identities/{provider}/unlink"): "profile",
}

HTTP_ENTRIES = [e for e in MANIFEST if e["function"] in HTTP_FUNCTIONS and "shape" not in e]
OTHER_FRONT_END_ENTRIES = [e for e in MANIFEST if e["function"] in HTTP_FUNCTIONS and "shape" in e]
STREAM_ENTRIES = [e for e in MANIFEST if e["function"] in STREAM_FUNCTIONS]

# What the outbox table's stream carries (infra/template.yaml: key `pk`, NEW_IMAGE).
STREAM_ARN = re.compile(r"arn:aws:dynamodb:([a-z0-9-]+):\d{12}:table/[A-Za-z0-9_.-]+/stream/\S+")
CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){7}")
OUTBOX_INVITATION_ATTRIBUTES = {  # shared/src/domain/outbox.rs, as the DynamoDB adapter stores it
    "pk": "S", "message_id": "S", "kind": "S", "to": "S", "first_name": "S", "secret": "S", "recipient": "S",
    "invitation_id": "S", "contact_id": "S", "valid_until": "N", "status": "S", "created_at": "N",
    "ttl": "N",
}


def load(entry) -> dict:
    return json.loads((ROOT / entry["file"]).read_text())


def test_manifest_lists_every_event_file_once():
    listed = [e["file"] for e in MANIFEST]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = sorted(str(p.relative_to(ROOT)) for p in EVENTS.glob("*/*.json"))
    assert sorted(listed) == on_disk
    for e in MANIFEST:
        assert e["function"] in FUNCTIONS, e
        assert e["file"].startswith(f"events/{e['function']}/"), e
        if e["function"] in HTTP_FUNCTIONS:
            assert isinstance(e.get("status"), int) and "expect" not in e, e
        elif e["function"] in NOTIFICATION_FUNCTIONS:
            assert "expect" in e and e["expect"] is None and "status" not in e, e
        else:
            assert isinstance(e.get("expect"), dict) and "status" not in e, e


def test_manifest_order_registers_before_using_the_account():
    files = [e["file"] for e in MANIFEST]
    new = files.index("events/register/post-json-new.json")
    assert new < files.index("events/register/post-json-taken.json")
    assert new < files.index("events/sign-in/post-json-ok.json")
    assert files.index("events/sign-in/post-json-ok.json") < files.index(
        "events/sign-in/post-json-wrong-password.json"
    )


def route_of(method: str, path: str, path_parameters: dict) -> str | None:
    """The ROUTES key that `path` matches with these path parameters (None if none does)."""
    for m, route in ROUTES:
        if m != method:
            continue
        names = re.findall(r"{(\w+)}", route)
        if set(names) != set(path_parameters):
            continue
        concrete = route
        for name in names:
            concrete = concrete.replace("{" + name + "}", path_parameters[name])
        if concrete == path:
            return route
    return None


@pytest.mark.parametrize("entry", HTTP_ENTRIES, ids=[e["file"] for e in HTTP_ENTRIES])
def test_event_is_a_well_formed_http_api_v2_event(entry):
    ev = load(entry)
    assert ev["version"] == "2.0"
    ctx = ev["requestContext"]
    method, path = ctx["http"]["method"], ctx["http"]["path"]
    params = ev.get("pathParameters") or {}
    assert all(isinstance(v, str) and v and "/" not in v for v in params.values()), params
    route = route_of(method, path, params)
    assert route is not None, f"{method} {path} with pathParameters {params} is no route"
    assert ev["routeKey"] == ctx["routeKey"] == f"{method} {route}"
    assert ev["rawPath"] == path
    assert ROUTES[(method, route)] == entry["function"], "the route belongs to this function"
    assert isinstance(ev["rawQueryString"], str)
    query = {k: ",".join(v) for k, v in parse_qs(ev["rawQueryString"]).items()}
    assert (ev.get("queryStringParameters") or {}) == query, "queryStringParameters match"
    assert all(k == k.lower() for k in ev["headers"]), "HTTP API lower-cases header names"
    assert "cookie" not in ev["headers"], "payload 2.0 carries cookies in the `cookies` array"
    assert all(isinstance(c, str) and "=" in c for c in ev.get("cookies", []))
    assert ctx["stage"] == "$default"
    for key in ("accountId", "apiId", "domainName", "requestId", "time"):
        assert isinstance(ctx[key], str) and ctx[key], key
    assert isinstance(ctx["timeEpoch"], int)
    assert ctx["http"]["sourceIp"] and ctx["http"]["userAgent"] == ev["headers"]["user-agent"]
    assert ev["headers"]["host"] == ctx["domainName"]
    assert ev["isBase64Encoded"] is False
    if method == "POST":
        assert isinstance(ev["body"], str)
        assert ev["headers"]["content-length"] == str(len(ev["body"].encode()))
        ctype = ev["headers"].get("content-type", "")
        name = Path(entry["file"]).name
        if ctype == "application/json" and "malformed" not in name and ev["body"]:
            json.loads(ev["body"])
    else:
        assert "body" not in ev or ev["body"] in (None, "")


def test_every_front_end_has_sample_events():
    assert {e["shape"] for e in OTHER_FRONT_END_ENTRIES} == {"rest-api", "function-url", "alb"}


@pytest.mark.parametrize("entry", OTHER_FRONT_END_ENTRIES, ids=[e["file"] for e in OTHER_FRONT_END_ENTRIES])
def test_event_is_a_well_formed_event_of_its_front_end(entry):
    ev, shape = load(entry), entry["shape"]
    if shape == "function-url":
        # Payload 2.0 like the HTTP API's, with one catch-all route and the $default stage.
        ctx = ev["requestContext"]
        method, path = ctx["http"]["method"], ctx["http"]["path"]
        assert ev["version"] == "2.0" and ev["routeKey"] == ctx["routeKey"] == "$default"
        assert ctx["stage"] == "$default" and ev["rawPath"] == path
        assert ctx["domainName"].endswith(".on.aws") and ev["headers"]["host"] == ctx["domainName"]
        assert ctx["http"]["sourceIp"]
    elif shape == "rest-api":
        # Payload 1.0: the path without the stage, the stage and its path in the request context.
        ctx = ev["requestContext"]
        method, path = ev["httpMethod"], ev["path"]
        assert ctx["httpMethod"] == method and ctx["stage"] not in ("", "$default")
        assert ctx["path"] == f"/{ctx['stage']}{path}"
        assert ctx["identity"]["sourceIp"]
        assert {k: [v] for k, v in ev["headers"].items()} == ev["multiValueHeaders"]
    else:
        # An ALB target group's event: the client's address is the last X-Forwarded-For entry.
        method, path = ev["httpMethod"], ev["path"]
        assert ev["requestContext"]["elb"]["targetGroupArn"].startswith("arn:aws:elasticloadbalancing:")
        assert ev["headers"]["x-forwarded-for"].split(",")[-1].strip()
    route = route_of(method, path, {})
    assert route is not None and ROUTES[(method, route)] == entry["function"], f"{method} {path}"
    if method == "POST":
        assert ev["headers"]["content-length"] == str(len(ev["body"].encode()))


def invoke(function: str, data_file: str, port: int) -> dict:
    cmd = [
        str(CARGO_LAMBDA), "lambda", "invoke", function,
        "--data-file", data_file,
        "--invoke-port", str(port),
        "--invoke-address", "127.0.0.1",
        "--output-format", "json",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout)


def test_every_event_answers_its_manifest_status(stack):
    """Run in manifest order (later events depend on earlier ones); report every mismatch.
    The session's stack serves: the other tests use unique emails, never ada@ or grace@."""
    mismatches = []
    for entry in MANIFEST:
        response = invoke(entry["function"], entry["file"], stack.portal_port)
        if "expect" in entry:
            if response != entry["expect"]:
                mismatches.append(f"{entry['file']}: expected {entry['expect']}, got {response}")
            continue
        got = response.get("statusCode")
        if got != entry["status"]:
            body = str(response.get("body", ""))[:300]
            mismatches.append(f"{entry['file']}: expected {entry['status']}, got {got}: {body}")
    assert not mismatches, "\n".join(mismatches)


# --- DynamoDB stream batches (send-email) ---------------------------------------------------------

def stream_records(entry) -> list[dict]:
    ev = load(entry)
    assert set(ev) == {"Records"}, "a stream batch holds only Records"
    assert isinstance(ev["Records"], list) and ev["Records"], "a batch is never empty"
    return ev["Records"]


@pytest.mark.parametrize("entry", STREAM_ENTRIES, ids=[e["file"] for e in STREAM_ENTRIES])
def test_event_is_a_well_formed_dynamodb_stream_batch(entry):
    for record in stream_records(entry):
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventName"] in ("INSERT", "MODIFY", "REMOVE")
        assert record["eventVersion"] == "1.1"
        assert isinstance(record["eventID"], str) and record["eventID"]
        arn = STREAM_ARN.fullmatch(record["eventSourceARN"])
        assert arn, f"not a stream ARN: {record['eventSourceARN']}"
        assert record["awsRegion"] == arn.group(1), "the region of the stream's ARN"
        change = record["dynamodb"]
        assert change["StreamViewType"] == "NEW_IMAGE", "the outbox stream's view type"
        assert isinstance(change["ApproximateCreationDateTime"], (int, float))
        assert isinstance(change["SequenceNumber"], str) and change["SequenceNumber"].isdigit()
        assert isinstance(change["SizeBytes"], int) and change["SizeBytes"] > 0
        assert set(change["Keys"]) == {"pk"} and set(change["Keys"]["pk"]) == {"S"}
        assert "OldImage" not in change, "NEW_IMAGE streams carry no old image"
        if record["eventName"] == "REMOVE":
            assert "NewImage" not in change
            continue
        image = change["NewImage"]
        assert image["pk"] == change["Keys"]["pk"] == image["message_id"]
        for name, value in image.items():
            assert isinstance(value, dict) and len(value) == 1, f"{name}: one typed value"
            (kind, raw), = value.items()
            assert kind in ("S", "N", "BOOL", "NULL", "M", "L"), f"{name}: {kind}"
            if kind == "N":
                assert isinstance(raw, str) and raw.lstrip("-").isdigit(), f"{name}: {raw!r}"
        if image["kind"] == {"S": "invitation"} and record["eventName"] == "INSERT":
            assert {k: next(iter(v)) for k, v in image.items()} == OUTBOX_INVITATION_ATTRIBUTES
            assert image["status"] == {"S": "pending"}, "a new outbox message is pending"
            assert CODE.fullmatch(image["secret"]["S"]), image["secret"]
            created, ttl = int(image["created_at"]["N"]), int(image["ttl"]["N"])
            assert int(image["valid_until"]["N"]) > created and ttl > created
        if record["eventName"] == "MODIFY":
            assert image["status"] != {"S": "pending"}, "a MODIFY records the delivery"
            assert "secret" not in image, "a sent message no longer holds its code"


def test_stream_samples_cover_an_insert_a_duplicate_delivery_and_a_modify():
    batches = {e["file"]: stream_records(e) for e in STREAM_ENTRIES}
    single_inserts = [f for f, rs in batches.items()
                      if len(rs) == 1 and rs[0]["eventName"] == "INSERT"]
    duplicates = [f for f, rs in batches.items()
                  if len(rs) == 2 and rs[0] == rs[1] and rs[0]["eventName"] == "INSERT"]
    modifies = [f for f, rs in batches.items()
                if rs and all(r["eventName"] == "MODIFY" for r in rs)]
    assert single_inserts and duplicates and modifies, sorted(batches)
    insert = batches[single_inserts[0]][0]
    assert batches[duplicates[0]][0] == insert, "the duplicate delivers the same INSERT again"
    modify = batches[modifies[0]][0]
    assert modify["dynamodb"]["Keys"] == insert["dynamodb"]["Keys"], "the same message, modified"
    assert int(modify["dynamodb"]["SequenceNumber"]) > int(insert["dynamodb"]["SequenceNumber"])


def sample_insert() -> dict:
    for e in STREAM_ENTRIES:
        records = stream_records(e)
        if len(records) == 1 and records[0]["eventName"] == "INSERT":
            return records[0]
    raise AssertionError("no single-INSERT stream sample")


def test_sample_insert_has_the_shape_of_a_real_outbox_record(stack):
    """The hand-written INSERT has the attributes (names and types) and the record fields of the
    record the portal's own outbox stream carries for a new invitation."""
    admin = Portal(stack.portal_url)
    assert admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    resp = admin.post_json("/admin/invitations", {"email": unique_email("event-shape"),
                                                  "first_name": "Grace", "last_name": "Hopper"})
    assert resp.status_code == 201, describe(resp)
    invitation_id = resp.json()["invitation_id"]
    deadline = time.monotonic() + 30
    real = []
    while not real and time.monotonic() < deadline:
        real = [r for r in outbox_stream_records(stack)
                if r["eventName"] == "INSERT"
                and r["dynamodb"]["NewImage"].get("invitation_id") == {"S": invitation_id}]
        time.sleep(0.3)
    assert real, f"no INSERT on the outbox stream for invitation {invitation_id}"
    real, sample = real[0], sample_insert()

    def types(image):
        return {k: next(iter(v)) for k, v in image.items()}

    assert types(sample["dynamodb"]["NewImage"]) == types(real["dynamodb"]["NewImage"])
    assert types(sample["dynamodb"]["Keys"]) == types(real["dynamodb"]["Keys"])
    for field in ("eventID", "eventName", "eventVersion", "eventSource", "eventSourceARN"):
        assert field in real and field in sample, field
    required = {"Keys", "NewImage", "SequenceNumber", "SizeBytes", "StreamViewType"}
    assert required <= set(real["dynamodb"]) and required <= set(sample["dynamodb"])
    assert sample["dynamodb"]["StreamViewType"] == real["dynamodb"]["StreamViewType"]


def test_a_stream_record_of_a_message_not_in_the_outbox_sends_nothing(stack):
    """send-email sends only what it claims in the outbox table: a forged or replayed record of a
    message the table does not hold (the samples, on this stack) is skipped, not retried."""
    insert = sample_insert()
    to = insert["dynamodb"]["NewImage"]["to"]["S"]
    before = [m for m in stack.emails() if to in m["to"]]
    assert invoke_function(stack, "send-email", {"Records": [insert, insert]}) == {
        "batchItemFailures": []}
    stack.settle()
    assert [m for m in stack.emails() if to in m["to"]] == before
