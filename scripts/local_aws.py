#!/usr/bin/env python3
"""The local AWS endpoint (moto server) and the resources from infra/template.yaml.

Subcommands:
  serve --port P [--exit-on-stdin-eof]
      Run moto server on 127.0.0.1:P in this process; print "ready" once it answers.
      With --exit-on-stdin-eof it also stops when its standard input closes, so a test harness
      that spawns it with a piped stdin never leaves it behind.
  create-tables --endpoint-url URL --stack-name NAME [--stack-name NAME2 ...] [--email-identity ADDR]
      Create every AWS::DynamoDB::Table of the template (streams, TTL, PITR included), named as the
      template's TableName with AWS::StackName = NAME. A table that exists is left alone.
      --email-identity also creates that SES v2 email identity (saves a second process).
  create-email-identity --endpoint-url URL --email ADDR
      Create an SES v2 email identity (SendEmail from an address without one is rejected).
  emails --endpoint-url URL [--json]
      Print the emails sent so far through the local SES (recipients, subject, body): `make emails`.

Only the standard library is imported at start-up; botocore, PyYAML and moto are imported by the
subcommands that need them, so create-tables (run once per Rust integration test) stays fast.
The module is also imported by scripts/stack.py: load_template(), Resolver, table_specs(),
create_queues(), sent_emails().
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

NO_VALUE = object()  # what Ref AWS::NoValue resolves to: the key is dropped


# ---------------------------------------------------------------------------------------------
# The template: YAML with CloudFormation short tags, and a resolver for the local values
# ---------------------------------------------------------------------------------------------

def load_template(path: str = TEMPLATE) -> dict:
    """Parse a CloudFormation/SAM template; short tags become their long form
    (`!Ref X` -> {"Ref": "X"}, `!GetAtt A.B` -> {"Fn::GetAtt": ["A", "B"]}, `!Sub s` -> {"Fn::Sub": s})."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[misc, valid-type]
        pass

    def construct(loader, tag_suffix, node):
        name = "Ref" if tag_suffix == "Ref" else "Fn::" + tag_suffix
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag_suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", construct)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


class Resolver:
    """Evaluates the intrinsic functions the local stack needs, for one stack name.

    parameters: values overriding the template's parameter defaults (by parameter name).
    Refs to DynamoDB tables give their resolved TableName; GetAtt Arn/StreamArn give local ARNs."""

    def __init__(self, template: dict, stack_name: str, parameters: dict | None = None,
                 region: str = REGION):
        self.template = template
        self.resources = template.get("Resources", {}) or {}
        self.pseudo = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/local",
        }
        self.parameters = {}
        for name, spec in (template.get("Parameters", {}) or {}).items():
            if "Default" in spec:
                self.parameters[name] = str(spec["Default"])
        for name, value in (parameters or {}).items():
            self.parameters[name] = str(value)

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        res = self.resources.get(name)
        if res is not None:
            props = res.get("Properties", {}) or {}
            if res.get("Type") == "AWS::DynamoDB::Table":
                return self.table_name(name)
            if res.get("Type") == "AWS::SQS::Queue":
                return self.queue_url(name)
            for key in ("EmailIdentity", "Name", "TableName"):
                if key in props:
                    return self.resolve(props[key])
            return name
        raise KeyError(f"template: Ref to unknown name {name!r}")

    def table_name(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties", {}) or {}
        if "TableName" in props:
            return self.resolve(props["TableName"])
        return f"{self.pseudo['AWS::StackName']}-{logical_id}"

    def queue_name(self, logical_id: str) -> str:
        """A queue's QueueName, or the local stand-in for the name CloudFormation generates."""
        props = self.resources[logical_id].get("Properties", {}) or {}
        if "QueueName" in props:
            return self.resolve(props["QueueName"])
        name = f"{self.pseudo['AWS::StackName']}-{logical_id}"
        return name + (".fifo" if str(self.resolve(props.get("FifoQueue", ""))).lower() == "true"
                       else "")

    def queue_url(self, logical_id: str, endpoint_url: str = "http://127.0.0.1:4566") -> str:
        return f"{endpoint_url}/{ACCOUNT_ID}/{self.queue_name(logical_id)}"

    def get_att(self, logical_id: str, attribute: str):
        res = self.resources.get(logical_id)
        if res is None:
            raise KeyError(f"template: GetAtt of unknown resource {logical_id!r}")
        if res.get("Type") == "AWS::DynamoDB::Table":
            arn = f"arn:aws:dynamodb:{self.pseudo['AWS::Region']}:{ACCOUNT_ID}:table/{self.table_name(logical_id)}"
            if attribute == "Arn":
                return arn
            if attribute == "StreamArn":
                return arn + "/stream/local"
        if res.get("Type") == "AWS::SQS::Queue":
            name = self.queue_name(logical_id)
            if attribute == "Arn":
                return f"arn:aws:sqs:{self.pseudo['AWS::Region']}:{ACCOUNT_ID}:{name}"
            if attribute == "QueueName":
                return name
            if attribute == "QueueUrl":
                return self.queue_url(logical_id)
        return f"{logical_id}.{attribute}"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value):
        """The value with every supported intrinsic function evaluated."""
        if isinstance(value, list):
            out = [self.resolve(v) for v in value]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(parts[0], parts[1])
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(v) for v in self.resolve(items))
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                a, b = self.resolve(arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg)[0]
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
        out = {}
        for k, v in value.items():
            r = self.resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def _sub(self, arg) -> str:
        import re

        if isinstance(arg, list):
            text, extra = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, extra = arg, {}

        def repl(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", repl, text)

    def included(self, logical_id: str) -> bool:
        cond = self.resources[logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    def resources_of_type(self, type_name: str):
        for logical_id, res in self.resources.items():
            if res.get("Type") == type_name and self.included(logical_id):
                yield logical_id, res


def table_specs(resolver: Resolver) -> list[tuple[str, dict]]:
    """(logical id, resolved Properties) of every DynamoDB table in the template."""
    return [(logical_id, resolver.resolve(res.get("Properties", {}) or {}))
            for logical_id, res in resolver.resources_of_type("AWS::DynamoDB::Table")]


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------

def client(service: str, endpoint_url: str, region: str = REGION):
    """A botocore client for the local endpoint (botocore alone imports faster than boto3)."""
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(
        service, region_name=region, endpoint_url=endpoint_url,
        config=botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"}),
        **CREDENTIALS,
    )


# ---------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------

def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_until_answers(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
            return True
        except urllib.error.HTTPError:
            return True  # it answered
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False


def keep_streams_across_cancelled_transactions() -> None:
    """Work around moto 5.2.5: when a TransactWriteItems is cancelled, moto rolls back by replacing
    each table with a deep copy, which detaches the table's stream shard (readers of the stream
    never see a later record) and leaves records of the rolled-back writes in the old shard. Real
    DynamoDB writes nothing to the stream for a cancelled transaction. Here the original shard is
    reattached to the restored table and the rolled-back records are dropped."""
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items
    if getattr(original, "keeps_streams", False):
        return

    def transact_write_items(self, transact_items):
        names = {next(iter(item.values())).get("TableName") for item in transact_items}
        before = {}
        for name in names:
            table = self.tables.get(name)
            shard = getattr(table, "stream_shard", None) if table is not None else None
            if shard is not None:
                before[name] = (shard, len(shard.items))
        try:
            return original(self, transact_items)
        except Exception:
            for name, (shard, length) in before.items():
                restored = self.tables.get(name)
                if restored is not None and restored.stream_shard is not shard:
                    del shard.items[length:]
                    shard.table = restored
                    restored.stream_shard = shard
            raise

    transact_write_items.keeps_streams = True
    DynamoDBBackend.transact_write_items = transact_write_items


def serialize_dynamodb_writes() -> None:
    """Work around moto 5.2.5's threaded server: its TransactWriteItems checks and applies items one
    by one and rolls back by restoring copies of whole tables taken when it started, so a
    transaction cancelled at the same time as another write puts the other write's changes back.
    Real DynamoDB transactions are serializable; running moto's writes one at a time gives the race
    tests (ten parallel redemptions, registrations) the same guarantees (and no read sees half of one)."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_writes_serialized", False):
        return
    lock = threading.RLock()

    def serialized(method):
        def run(self, *args, **kwargs):
            with lock:
                return method(self, *args, **kwargs)
        run.__name__ = method.__name__
        return run

    # Reads too, so that none sees a transaction half applied before its rollback.
    for name in ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items",
                 "get_item", "query", "scan"):
        setattr(DynamoDBBackend, name, serialized(getattr(DynamoDBBackend, name)))
    DynamoDBBackend._writes_serialized = True


def cmd_serve(args) -> int:
    if not port_is_free(args.port):
        print(f"local_aws: port {args.port} on 127.0.0.1 is already in use; stop what holds it "
              f"or choose another port (LOCAL_AWS_PORT=...).", file=sys.stderr)
        return 2

    import logging
    import signal

    os.environ.setdefault("MOTO_PORT", str(args.port))
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.server import ThreadedMotoServer

    keep_streams_across_cancelled_transactions()
    serialize_dynamodb_writes()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    # start() waits for a ready event that a failed bind never sets: start it from a helper thread.
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(timeout=30)
    url = f"http://127.0.0.1:{args.port}/moto-api/"
    if starter.is_alive() or not wait_until_answers(url, 30):
        print(f"local_aws: moto server did not start on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print("ready", flush=True)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    if args.exit_on_stdin_eof:
        def watch_stdin():
            try:
                while os.read(0, 65536):
                    pass
            except OSError:
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    while not stop.wait(0.5):
        pass
    try:
        server.stop()
    except Exception:  # noqa: BLE001 - we are exiting anyway
        pass
    return 0


# ---------------------------------------------------------------------------------------------
# create-tables, create-email-identity
# ---------------------------------------------------------------------------------------------

def create_table_args(props: dict) -> dict:
    """CreateTable arguments from resolved AWS::DynamoDB::Table Properties."""
    args = {
        "TableName": props["TableName"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if args["BillingMode"] == "PROVISIONED":
        args["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            indexes = []
            for index in props[key]:
                index = {k: v for k, v in index.items() if k in (
                    "IndexName", "KeySchema", "Projection", "ProvisionedThroughput",
                    "OnDemandThroughput")}
                if args["BillingMode"] == "PROVISIONED" and key == "GlobalSecondaryIndexes":
                    index.setdefault("ProvisionedThroughput",
                                     {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
                indexes.append(index)
            args[key] = indexes
    stream = props.get("StreamSpecification")
    if stream:
        args["StreamSpecification"] = {"StreamEnabled": True,
                                       "StreamViewType": stream["StreamViewType"]}
    if props.get("SSESpecification", {}).get("SSEEnabled"):
        args["SSESpecification"] = {"Enabled": True}
    if props.get("DeletionProtectionEnabled"):
        args["DeletionProtectionEnabled"] = False  # never locally: tests drop stacks freely
    return args


def create_tables(endpoint_url: str, stack_name: str, template: dict | None = None,
                  region: str = REGION, ddb=None) -> list[str]:
    """Create the template's tables for one stack name; return their names."""
    template = template or load_template()
    resolver = Resolver(template, stack_name, region=region)
    ddb = ddb or client("dynamodb", endpoint_url, region)
    names = []
    for _logical_id, props in table_specs(resolver):
        args = create_table_args(props)
        name = args["TableName"]
        names.append(name)
        try:
            ddb.create_table(**args)
        except ddb.exceptions.ResourceInUseException:
            continue  # exists: left as it is
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled"):
            try:
                ddb.update_continuous_backups(
                    TableName=name,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
            except Exception:  # noqa: BLE001 - optional locally
                pass
    return names


def create_queues(endpoint_url: str, resolver: Resolver, region: str = REGION,
                  sqs=None) -> dict[str, str]:
    """Create the template's SQS queues (by their local names); return {logical id: queue URL}."""
    sqs = sqs or client("sqs", endpoint_url, region)
    urls = {}
    for logical_id, res in resolver.resources_of_type("AWS::SQS::Queue"):
        name = resolver.queue_name(logical_id)
        attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        urls[logical_id] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return urls


def create_email_identity(endpoint_url: str, email: str, region: str = REGION, ses=None) -> None:
    ses = ses or client("sesv2", endpoint_url, region)
    try:
        ses.create_email_identity(EmailIdentity=email)
    except ses.exceptions.AlreadyExistsException:
        pass


def cmd_create_tables(args) -> int:
    template = load_template(args.template)
    ddb = client("dynamodb", args.endpoint_url, args.region)
    for stack_name in args.stack_name:
        for name in create_tables(args.endpoint_url, stack_name, template, args.region, ddb):
            if not args.quiet:
                print(name)
    if args.email_identity:
        for email in args.email_identity:
            create_email_identity(args.endpoint_url, email, args.region)
    return 0


def cmd_create_email_identity(args) -> int:
    create_email_identity(args.endpoint_url, args.email, args.region)
    return 0


# ---------------------------------------------------------------------------------------------
# emails
# ---------------------------------------------------------------------------------------------

def _html_to_text(html: str) -> str:
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.out: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag, attrs):
            if tag in ("script", "style", "head"):
                self.skip += 1
            if tag in ("br", "p", "div", "tr", "li", "h1", "h2", "h3"):
                self.out.append("\n")
            if tag == "a":
                href = dict(attrs).get("href")
                if href:
                    self.out.append(f" <{href}> ")

        def handle_endtag(self, tag):
            if tag in ("script", "style", "head") and self.skip:
                self.skip -= 1

        def handle_data(self, data):
            if not self.skip:
                self.out.append(data)

    p = P()
    p.feed(html)
    lines = [" ".join(line.split()) for line in "".join(p.out).splitlines()]
    return "\n".join(line for line in lines if line)


def _raw_to_parts(raw: str) -> tuple[str, str]:
    import email
    import email.policy

    msg = email.message_from_bytes(raw.encode("utf-8", "surrogateescape"),
                                   policy=email.policy.default)
    subject = str(msg.get("Subject", ""))
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return subject, ""
    body = part.get_content()
    if part.get_content_subtype() == "html":
        body = _html_to_text(body)
    return subject, body


def sent_emails(endpoint_url: str) -> list[dict]:
    """The emails moto's SES recorded: {"id", "from", "to", "subject", "body"}.

    Oldest first within each kind (simple, then raw, then templated: moto keeps no timestamps).
    For a simple email with both parts moto keeps only the HTML part; it is shown as text."""
    with urllib.request.urlopen(endpoint_url.rstrip("/") + "/moto-api/data.json", timeout=30) as r:
        data = json.load(r)
    ses = data.get("ses", {})
    out = []
    for m in ses.get("Message", []):
        dest = m.get("destinations") or {}
        to = []
        for key in ("ToAddresses", "CcAddresses", "BccAddresses"):
            to += dest.get(key, []) or []
        body = m.get("body") or ""
        if "<" in body and ">" in body and ("</" in body or "<br" in body.lower()):
            body = _html_to_text(body)  # moto keeps the Html part when there is one
        out.append({"id": m.get("id"), "from": m.get("source"), "to": to,
                    "subject": m.get("subject") or "", "body": body})
    for m in ses.get("RawMessage", []):
        subject, body = _raw_to_parts(m.get("raw_data") or "")
        to = list(dict.fromkeys(m.get("destinations") or []))  # moto may list one twice
        out.append({"id": m.get("id"), "from": m.get("source"), "to": to,
                    "subject": subject, "body": body})
    for m in ses.get("TemplateMessage", []):
        dest = m.get("destinations") or {}
        out.append({"id": m.get("id"), "from": m.get("source"),
                    "to": list(dest.get("ToAddresses", []) if isinstance(dest, dict) else dest),
                    "subject": f"(template {m.get('template')})",
                    "body": str(m.get("template_data"))})
    return out


def cmd_emails(args) -> int:
    try:
        emails = sent_emails(args.endpoint_url)
    except (urllib.error.URLError, OSError) as e:
        print(f"local_aws: cannot reach the local AWS endpoint {args.endpoint_url} ({e}); "
              f"is the stack running (make run)?", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(emails, indent=2))
        return 0
    if not emails:
        print("(no emails sent yet)", file=sys.stderr)
    for i, m in enumerate(emails, 1):
        print(f"--- email {i} ---")
        print(f"From:    {m['from']}")
        print(f"To:      {', '.join(m['to'])}")
        print(f"Subject: {m['subject']}")
        print()
        print(m["body"].rstrip())
        print()
    return 0


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_aws.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run moto server in this process")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--exit-on-stdin-eof", action="store_true",
                   help="also stop when standard input closes")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    def common(p):
        p.add_argument("--endpoint-url", required=True)
        p.add_argument("--region", default=REGION)

    p = sub.add_parser("create-tables", help="create the template's DynamoDB tables")
    common(p)
    p.add_argument("--stack-name", action="append", required=True,
                   help="the local stack name (repeat for several stacks)")
    p.add_argument("--template", default=TEMPLATE)
    p.add_argument("--email-identity", action="append",
                   help="also create this SES v2 email identity")
    p.add_argument("--quiet", action="store_true", help="do not print the table names")
    p.set_defaults(func=cmd_create_tables)

    p = sub.add_parser("create-email-identity", help="create an SES v2 email identity")
    common(p)
    p.add_argument("--email", required=True)
    p.set_defaults(func=cmd_create_email_identity)

    p = sub.add_parser("emails", help="print the emails sent so far (make emails)")
    common(p)
    p.add_argument("--json", action="store_true", help="print them as a JSON list")
    p.set_defaults(func=cmd_emails)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
