#!/usr/bin/env python3
"""The local AWS endpoint (moto server) and the resources of infra/template.yaml.

  serve --port P [--exit-on-stdin-eof] [--ses-max-send-rate N]   moto server (with
      moto_workarounds.py and the two read routes below) on 127.0.0.1:P; prints "ready" once it
      listens. --exit-on-stdin-eof: also stop when stdin closes, so a harness that spawns it with a
      piped stdin never leaves it behind. --ses-max-send-rate: the SES sending rate it reports
      (moto's own: 1 a second).
  create-tables --endpoint-url URL --stack-name NAME...   the template's DynamoDB tables (printed),
      SQS queues and SES identities for each stack name; existing ones are left alone.
  emails --endpoint-url URL   the emails sent so far through the local SES (make emails): sender,
      recipients, subject and text of each.
  events --endpoint-url URL   the portal events published so far on the local bus (make events):
      DetailType, time and detail of each, read from the bus's catch-all tap queue.
scripts/stack.py imports it; botocore, cfn-lint and moto are imported only where needed."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
REGION, ACCOUNT_ID = "us-east-1", "123456789012"
NO_VALUE = object()  # what Ref AWS::NoValue resolves to: the key is dropped
# The local stack's values of the template's required parameters (no default there, so that no
# deployment can keep a local value by mistake); a setting of the stack overrides them.
LOCAL_PARAMETERS = {"PortalBaseUrl": "http://localhost:9000", "EmailSender": "no-reply@example.com"}
# The local event bus (CONTRACT.md "Events"), whatever the stack's name: the template's bus
# resolves to it locally. A catch-all rule (every event of Source "portal") copies what is
# published into the tap queue, which `make events` and the tests read.
LOCAL_EVENT_BUS = "portal-events"
EVENT_TAP_QUEUE = f"{LOCAL_EVENT_BUS}-tap"
EVENT_TAP_RULE = f"{LOCAL_EVENT_BUS}-all"


class StackError(Exception):
    """A step of the local stack failed; the message says which and what to do."""


def say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def load_template() -> dict:
    """The template as cfn-lint decodes it (short tags in long form: `!GetAtt A.B` is
    {"Fn::GetAtt": ["A", "B"]}). Importing cfn-lint takes a second and create-tables runs once
    per Rust integration test: the result is kept in scripts/__pycache__, a file per version."""
    stat = os.stat(TEMPLATE)
    cache = os.path.join(ROOT, "scripts", "__pycache__",
                         f"template-{stat.st_mtime_ns}-{stat.st_size}.json")
    with contextlib.suppress(OSError, ValueError), open(cache, encoding="utf-8") as f:
        return json.load(f)
    import cfnlint.decode

    template, problems = cfnlint.decode.decode(TEMPLATE)
    if template is None:
        raise StackError(f"{TEMPLATE}: " + "; ".join(map(str, problems)))
    template = json.loads(json.dumps(template))  # plain dicts, lists and strings
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(f"{cache}.{os.getpid()}", "w", encoding="utf-8") as f:
            json.dump(template, f)
        os.replace(f"{cache}.{os.getpid()}", cache)  # whole, even with concurrent writers
    return template


class Resolver:
    """Evaluates the template's intrinsic functions for one local stack: Ref of parameters
    (defaults, overridden by `parameters`), pseudo parameters and tables (their local names), Sub,
    If and the condition functions. Fn::GetAtt is left as it is: the ARNs it gives are used in
    IAM policies and alarms, which the local stack does not have."""

    def __init__(self, template: dict, stack_name: str, parameters: dict | None = None):
        self.template, self.resources = template, template.get("Resources") or {}
        self.stack_name = stack_name
        self.values = {"AWS::StackName": stack_name, "AWS::Region": REGION, "AWS::Partition": "aws",
                       "AWS::AccountId": ACCOUNT_ID, "AWS::URLSuffix": "amazonaws.com",
                       "AWS::NoValue": NO_VALUE}
        self.values.update({name: str(spec["Default"]) for name, spec in
                            (template.get("Parameters") or {}).items() if "Default" in spec})
        self.values.update(LOCAL_PARAMETERS)
        self.values.update({name: str(value) for name, value in (parameters or {}).items()})

    def name_of(self, logical_id: str) -> str:
        """A resource's name as the template gives it, or the local stand-in for the name
        CloudFormation makes: `<stack>-contacts` for the table ContactsTable, `<stack>-<logical
        id>` for anything else (a queue)."""
        resource = self.resources[logical_id]
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Events::EventBus":
            return LOCAL_EVENT_BUS
        if "TableName" in props:
            return self.resolve(props["TableName"])
        if resource.get("Type") == "AWS::DynamoDB::Table":
            return f"{self.stack_name}-{logical_id.removesuffix('Table').lower()}"
        return f"{self.stack_name}-{logical_id}"

    def ref(self, name: str):
        return self.values[name] if name in self.values else self.name_of(name)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    FUNCTIONS = {
        "Ref": lambda self, a: self.ref(a),
        "Fn::Sub": lambda self, a: self.sub(a),
        "Fn::If": lambda self, a: self.resolve(a[1] if self.condition(a[0]) else a[2]),
        "Fn::Equals": lambda self, a: str(self.resolve(a[0])) == str(self.resolve(a[1])),
        "Fn::Not": lambda self, a: not self.resolve(a[0]),
        "Fn::And": lambda self, a: all(self.resolve(c) for c in a),
        "Fn::Or": lambda self, a: any(self.resolve(c) for c in a),
        "Condition": lambda self, a: self.condition(a),
    }

    def resolve(self, value):
        """The value with every intrinsic function above evaluated."""
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and next(iter(value)) in self.FUNCTIONS:
            ((name, arg),) = value.items()
            return self.FUNCTIONS[name](self, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def sub(self, text: str) -> str:
        """Fn::Sub of a string whose every ${Name} is a Ref."""
        return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self.ref(m.group(1))), text)

    def resources_of_type(self, kind: str) -> list[tuple[str, dict]]:
        """(logical id, resource) of each resource of a type whose Condition holds."""
        return [(logical_id, res) for logical_id, res in self.resources.items()
                if res.get("Type") == kind
                and ("Condition" not in res or self.condition(res["Condition"]))]

    def tables(self) -> dict[str, dict]:
        """The resolved Properties of every DynamoDB table, by logical id, each with its
        TableName (the local stand-in where CloudFormation makes the name: see name_of)."""
        return {logical_id: {"TableName": self.name_of(logical_id),
                             **self.resolve(res.get("Properties") or {})}
                for logical_id, res in self.resources_of_type("AWS::DynamoDB::Table")}


def client(service: str, endpoint_url: str):
    """A botocore client for the local endpoint (botocore alone imports faster than boto3)."""
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        service, region_name=REGION, endpoint_url=endpoint_url, aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"}))


# The Properties of AWS::DynamoDB::Table that CreateTable takes as they are.
CREATE_TABLE_KEYS = ("TableName", "AttributeDefinitions", "KeySchema", "BillingMode",
                     "ProvisionedThroughput", "GlobalSecondaryIndexes", "LocalSecondaryIndexes")


def create_resources(endpoint_url: str, resolver: Resolver) -> list[str]:
    """Create the template's DynamoDB tables (each with its stream and TTL: backups and deletion
    protection do not apply locally), SQS queues and SES v2 email identities (SendEmail from an
    address without one is rejected) for one local stack; existing ones are left as they are.
    Return the tables' names."""
    ddb, tables = client("dynamodb", endpoint_url), []
    for props in resolver.tables().values():
        args = {k: v for k, v in props.items() if k in CREATE_TABLE_KEYS}
        if "StreamSpecification" in props:
            args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        tables.append(name := args["TableName"])
        try:
            ddb.create_table(**args)
        except ddb.exceptions.ResourceInUseException:
            continue
        if (ttl := props.get("TimeToLiveSpecification") or {}).get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
    sqs = client("sqs", endpoint_url)
    for logical_id, _ in resolver.resources_of_type("AWS::SQS::Queue"):
        sqs.create_queue(QueueName=resolver.name_of(logical_id))
    create_kms_aliases(endpoint_url, resolver)
    ses = client("sesv2", endpoint_url)
    for _, res in resolver.resources_of_type("AWS::SES::EmailIdentity"):
        with contextlib.suppress(ses.exceptions.AlreadyExistsException):
            ses.create_email_identity(EmailIdentity=resolver.resolve(
                res["Properties"]["EmailIdentity"]))
    if resolver.resources_of_type("AWS::Events::EventBus"):
        create_event_bus(endpoint_url)
    return tables


def secret_arn(name: str) -> str:
    """The partial ARN of the local Secrets Manager secret `name` (without the random suffix AWS
    and moto add): GetSecretValue takes it, and a provider's client_secret_arn can name it before
    the secret exists."""
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{name}"


def put_secrets(endpoint_url: str, secrets: dict[str, str]) -> dict[str, str]:
    """Secrets Manager secrets ({name: SecretString}) on the local endpoint, created or given this
    value; their full ARNs by name. The template makes none: in AWS an operator creates each
    provider's client secret as `<stack name>/oidc/<provider id>` (README "External sign-in")."""
    if not secrets:
        return {}
    sm, arns = client("secretsmanager", endpoint_url), {}
    for name, value in secrets.items():
        try:
            arns[name] = sm.create_secret(Name=name, SecretString=value)["ARN"]
        except sm.exceptions.ResourceExistsException:
            arns[name] = sm.put_secret_value(SecretId=name, SecretString=value)["ARN"]
    return arns


def create_event_bus(endpoint_url: str) -> None:
    """The local event bus with its catch-all rule into the tap queue (idempotent)."""
    events, sqs = client("events", endpoint_url), client("sqs", endpoint_url)
    with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
        events.create_event_bus(Name=LOCAL_EVENT_BUS)
    queue_url = sqs.create_queue(QueueName=EVENT_TAP_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_rule(Name=EVENT_TAP_RULE, EventBusName=LOCAL_EVENT_BUS,
                    EventPattern=json.dumps({"source": ["portal"]}), State="ENABLED")
    events.put_targets(Rule=EVENT_TAP_RULE, EventBusName=LOCAL_EVENT_BUS,
                       Targets=[{"Id": "tap", "Arn": queue_arn}])


# Two read routes that `serve` adds to moto's own API: the emails SES sent and the portal events
# that reached the tap queue, each oldest first, from the `since`-th on (?since=N, default 0). They
# read the backends' own lists: moto's state dump (/moto-api/data.json) serialises every model
# instance moto tracks and grows with everything the stack ever did.
EMAILS_ROUTE = "/moto-api/portal/emails"
EVENTS_ROUTE = "/moto-api/portal/events"


def register_read_routes() -> None:
    """Add EMAILS_ROUTE and EVENTS_ROUTE to moto's API (moto builds its API's routes from this
    table on the server's first /moto-api request: call this before)."""
    from moto.moto_api._internal import urls

    urls.url_paths["{0}" + EMAILS_ROUTE] = emails_route
    urls.url_paths["{0}" + EVENTS_ROUTE] = events_route


def _since(full_url: str) -> int:
    from urllib.parse import parse_qs, urlsplit

    values = parse_qs(urlsplit(full_url).query).get("since") or ["0"]
    return max(0, int(values[0])) if values[0].isdigit() else 0


def _json_answer(found: list, full_url: str):
    return 200, {"Content-Type": "application/json"}, json.dumps(found[_since(full_url):])


def emails_route(request, full_url: str, headers):
    """EMAILS_ROUTE: [{"id", "from", "to", "subject", "body"}] of each simple (not raw or
    templated) email SES accepted, as the portal sends them."""
    from moto.ses.models import Message, ses_backends

    found = [{"id": m.id, "from": m.source, "subject": m.subject or "", "body": m.body or "",
              "to": [a for addresses in (m.destinations or {}).values() for a in addresses]}
             for _, _, backend in ses_backends.iter_backends()
             for m in list(backend.sent_messages) if type(m) is Message]
    return _json_answer(found, full_url)


def events_route(request, full_url: str, headers):
    """EVENTS_ROUTE: each portal event (Source "portal") in the tap queue, as EventBridge delivers
    it to a target, whether or not someone received it from the queue."""
    from moto.sqs.models import sqs_backends

    found = []
    for _, _, backend in sqs_backends.iter_backends():
        queue = backend.queues.get(EVENT_TAP_QUEUE)
        for m in list(queue._messages) if queue is not None else []:
            try:
                event = json.loads(m.body)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("source") == "portal":
                found.append(event)
    return _json_answer(found, full_url)


def _read_route(endpoint_url: str, route: str, since: int) -> list[dict]:
    url = f"{endpoint_url.rstrip('/')}{route}?since={since}"
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def published_events(endpoint_url: str, since: int = 0) -> list[dict]:
    """The portal events the local bus delivered to its tap queue, oldest first (from the
    `since`-th), as EventBridge delivers them to a target: {"id", "detail-type", "source", "time",
    "detail", ...}. Read through EVENTS_ROUTE, so that reading takes nothing from the queue: every
    caller (make events, a test, a second look) sees every event."""
    return _read_route(endpoint_url, EVENTS_ROUTE, since)


def print_events(args) -> int:
    try:
        events = published_events(args.endpoint_url)
    except OSError as e:  # urllib's URLError too
        print(f"local_aws: cannot reach the local AWS endpoint {args.endpoint_url} ({e}); "
              f"is the stack running (make run)?", file=sys.stderr)
        return 1
    if not events:
        print("(no events published yet)", file=sys.stderr)
    for event in events:
        print(f"{event.get('detail-type')}  {event.get('time')}  "
              f"{json.dumps(event.get('detail'), sort_keys=True)}")
    return 0


def create_kms_aliases(endpoint_url: str, resolver: Resolver) -> None:
    """A KMS key for each of the template's aliases (moto picks key ids, so the functions name a
    key by its alias, as the template's PORTAL_TOTP_KMS_KEY_ID does); an existing alias is kept."""
    kms = client("kms", endpoint_url)
    existing = {a["AliasName"] for a in kms.list_aliases().get("Aliases", [])}
    for _, res in resolver.resources_of_type("AWS::KMS::Alias"):
        alias = resolver.resolve(res["Properties"]["AliasName"])
        if alias in existing:
            continue
        key_id = kms.create_key(Description=f"local stand-in for {alias}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)


def serve(args) -> int:
    try:  # SO_REUSEADDR, as servers bind
        socket.create_server(("127.0.0.1", args.port)).close()
    except OSError:
        print(f"local_aws: port {args.port} on 127.0.0.1 is already in use; stop what holds it "
              f"or choose another port (LOCAL_AWS_PORT=...).", file=sys.stderr)
        return 2
    import moto_workarounds
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("MOTO_PORT", str(args.port))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    moto_workarounds.apply()
    if args.ses_max_send_rate is not None:
        moto_workarounds.report_ses_max_send_rate(args.ses_max_send_rate)
    register_read_routes()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    if not moto_workarounds.start_server(server):
        print(f"local_aws: moto server did not start on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    try:
        print("ready", flush=True)
        os.dup2(2, 1)  # anything printed later goes to stderr: the caller reads only that line
        if args.exit_on_stdin_eof:
            while os.read(0, 65536):  # until stdin closes
                pass
        else:
            signal.pause()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (above)
        pass
    # The server's own stop waits for its serving thread; should that hang (a CI run once waited
    # 20 s for it on a loaded machine), the process ends all the same: it holds nothing to save.
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=5)
    if stopper.is_alive():
        sys.stderr.flush()
        os._exit(0)
    return 0


def sent_emails(endpoint_url: str, since: int = 0) -> list[dict]:
    """The emails moto's SES recorded, oldest first (from the `since`-th): {"id", "from", "to",
    "subject", "body"}, read through EMAILS_ROUTE. The portal sends only simple (not raw)
    emails with a text body."""
    return _read_route(endpoint_url, EMAILS_ROUTE, since)


def print_emails(args) -> int:
    try:
        emails = sent_emails(args.endpoint_url)
    except OSError as e:  # urllib's URLError too
        print(f"local_aws: cannot reach the local AWS endpoint {args.endpoint_url} ({e}); "
              f"is the stack running (make run)?", file=sys.stderr)
        return 1
    if not emails:
        print("(no emails sent yet)", file=sys.stderr)
    for i, m in enumerate(emails, 1):
        print(f"--- email {i} ---\nFrom:    {m['from']}\nTo:      {', '.join(m['to'])}\n"
              f"Subject: {m['subject']}\n\n{m['body'].rstrip()}\n")
    return 0


def create_tables_command(args) -> int:
    template = load_template()
    for stack_name in args.stack_name:
        print("\n".join(create_resources(args.endpoint_url, Resolver(template, stack_name))))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="local_aws.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--ses-max-send-rate", type=float)
    p.set_defaults(func=serve)
    tables = sub.add_parser("create-tables")
    tables.add_argument("--stack-name", action="append", required=True)
    tables.set_defaults(func=create_tables_command)
    emails = sub.add_parser("emails")
    emails.set_defaults(func=print_emails)
    events = sub.add_parser("events")
    events.set_defaults(func=print_events)
    for p in (tables, emails, events):
        p.add_argument("--endpoint-url", required=True)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
