#!/usr/bin/env python3
"""The local AWS endpoint (moto server) and the resources of infra/template.yaml.

  serve --port P [--exit-on-stdin-eof] [--verbose]   moto server (with moto_workarounds.py) on
      127.0.0.1:P; prints "ready" once it listens. --exit-on-stdin-eof: also stop when stdin
      closes, so a harness that spawns it with a piped stdin never leaves it behind.
  create-tables --endpoint-url URL --stack-name NAME... [--email-identity ADDR...] [--quiet]
      the template's DynamoDB tables for each stack name (existing ones are left alone), printed;
      and these SES v2 email identities.
  emails --endpoint-url URL   the emails sent so far through the local SES (make emails): sender,
      recipients, subject and text of each.
scripts/stack.py imports it; botocore, cfn-lint and moto are imported only where needed."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "infra", "template.yaml")
REGION, ACCOUNT_ID = "us-east-1", "123456789012"
NO_VALUE = object()  # what Ref AWS::NoValue resolves to: the key is dropped


class StackError(Exception):
    """A step of the local stack failed; the message says which and what to do."""


def say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def load_template(path: str = TEMPLATE) -> dict:
    """The template as cfn-lint decodes it (short tags in long form: `!GetAtt A.B` is
    {"Fn::GetAtt": ["A", "B"]}). Importing cfn-lint takes a second and create-tables runs once
    per Rust integration test: the result is kept in scripts/__pycache__ by mtime and size."""
    stat = os.stat(path)
    key = [os.path.abspath(path), stat.st_mtime_ns, stat.st_size]
    cache = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__", "template.json")
    try:
        with open(cache, encoding="utf-8") as f:
            cached = json.load(f)
        if cached["key"] == key:
            return cached["template"]
    except (OSError, ValueError, KeyError):
        pass
    import cfnlint.decode

    template, problems = cfnlint.decode.decode(path)
    if template is None:
        raise StackError(f"{path}: " + "; ".join(str(p) for p in problems))
    template = json.loads(json.dumps(template))  # plain dicts, lists and strings
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(f"{cache}.{os.getpid()}", "w", encoding="utf-8") as f:
            json.dump({"key": key, "template": template}, f)
        os.replace(f"{cache}.{os.getpid()}", cache)
    except OSError:
        pass
    return template


class Resolver:
    """Evaluates the template's intrinsic functions for one local stack: parameters (defaults,
    overridden by `parameters`), pseudo parameters, tables and queues by their local names and
    ARNs, Sub, Join, Select, If and the condition functions."""

    def __init__(self, template: dict, stack_name: str, parameters: dict | None = None):
        self.template, self.resources = template, template.get("Resources") or {}
        self.stack_name = stack_name
        self.values = {"AWS::StackName": stack_name, "AWS::Region": REGION, "AWS::Partition": "aws",
                       "AWS::AccountId": ACCOUNT_ID, "AWS::URLSuffix": "amazonaws.com"}
        self.values.update({name: str(spec["Default"]) for name, spec in
                            (template.get("Parameters") or {}).items() if "Default" in spec})
        self.values.update({name: str(value) for name, value in (parameters or {}).items()})

    def props(self, logical_id: str) -> dict:
        if logical_id not in self.resources:
            raise StackError(f"template: no resource {logical_id!r}")
        return self.resources[logical_id].get("Properties") or {}

    def name_of(self, logical_id: str) -> str:
        """A table's or queue's name, or the local stand-in for the one CloudFormation makes."""
        props = self.props(logical_id)
        for key in ("TableName", "QueueName"):
            if key in props:
                return self.resolve(props[key])
        fifo = str(self.resolve(props.get("FifoQueue", ""))).lower() == "true"
        return f"{self.stack_name}-{logical_id}" + (".fifo" if fifo else "")

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        props, kind = self.props(name), self.resources[name].get("Type")
        if kind == "AWS::DynamoDB::Table":
            return self.name_of(name)
        if kind == "AWS::SQS::Queue":
            return self.get_att(name, "QueueUrl")
        return next((self.resolve(props[k]) for k in ("EmailIdentity", "Name") if k in props), name)

    def get_att(self, logical_id: str, attribute: str):
        name, kind = self.name_of(logical_id), self.resources[logical_id].get("Type")
        arn = f"arn:aws:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT_ID}:"
        values = {"AWS::DynamoDB::Table": {"Arn": f"{arn}table/{name}",
                                           "StreamArn": f"{arn}table/{name}/stream/local"},
                  "AWS::SQS::Queue": {"Arn": arn + name, "QueueName": name,
                                      "QueueUrl": f"http://127.0.0.1:4566/{ACCOUNT_ID}/{name}"}}
        return values.get(kind, {}).get(attribute, f"{logical_id}.{attribute}")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    FUNCTIONS = {
        "Ref": lambda self, a: self.ref(a),
        "Fn::GetAtt": lambda self, a: self.get_att(*(a if isinstance(a, list) else a.split(".", 1))),
        "Fn::Sub": lambda self, a: self.sub(*(a if isinstance(a, list) else [a, {}])),
        "Fn::Join": lambda self, a: str(a[0]).join(str(v) for v in self.resolve(a[1])),
        "Fn::Select": lambda self, a: self.resolve(a[1])[int(self.resolve(a[0]))],
        "Fn::If": lambda self, a: self.resolve(a[1] if self.condition(a[0]) else a[2]),
        "Fn::Equals": lambda self, a: str(self.resolve(a[0])) == str(self.resolve(a[1])),
        "Fn::Not": lambda self, a: not self.resolve(a[0]),
        "Fn::And": lambda self, a: all(self.resolve(a)),
        "Fn::Or": lambda self, a: any(self.resolve(a)),
        "Condition": lambda self, a: self.condition(a),
    }

    def resolve(self, value):
        """The value with every intrinsic function above evaluated."""
        if isinstance(value, list):
            return [v for v in map(self.resolve, value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1 and next(iter(value)) in self.FUNCTIONS:
            (name, arg), = value.items()
            return self.FUNCTIONS[name](self, arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def sub(self, text: str, variables: dict) -> str:
        def value(m):
            name, variables_ = m.group(1), self.resolve(variables)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables_:
                return str(variables_[name])
            if name.split(".", 1)[0] in self.resources and "." in name:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)

    def resources_of_type(self, kind: str):
        """(logical id, resource) of each resource of a type whose Condition holds."""
        return [(logical_id, res) for logical_id, res in self.resources.items()
                if res.get("Type") == kind
                and ("Condition" not in res or self.condition(res["Condition"]))]

    def tables(self) -> dict[str, dict]:
        """The resolved Properties of every DynamoDB table, by logical id."""
        return {logical_id: self.resolve(res.get("Properties") or {})
                for logical_id, res in self.resources_of_type("AWS::DynamoDB::Table")}


def client(service: str, endpoint_url: str):
    """A botocore client for the local endpoint (botocore alone imports faster than boto3)."""
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        service, region_name=REGION, endpoint_url=endpoint_url, aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"}))


def create_table_args(props: dict) -> dict:
    """CreateTable arguments from resolved AWS::DynamoDB::Table Properties: most have the API's
    names (DeletionProtectionEnabled never applies locally: tests drop stacks freely)."""
    args = {k: v for k, v in props.items() if k in (
        "TableName", "AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput")}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            args[key] = [{k: v for k, v in index.items() if k in (
                "IndexName", "KeySchema", "Projection", "ProvisionedThroughput",
                "OnDemandThroughput")} for index in props[key]]
    if props.get("StreamSpecification"):
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    if (props.get("SSESpecification") or {}).get("SSEEnabled"):
        args["SSESpecification"] = {"Enabled": True}
    return args


def create_tables(endpoint_url: str, stack_name: str, template: dict | None = None,
                  ddb=None) -> list[str]:
    """Create the template's tables for one stack name; return their names."""
    ddb, names = ddb or client("dynamodb", endpoint_url), []
    for props in Resolver(template or load_template(), stack_name).tables().values():
        args = create_table_args(props)
        names.append(name := args["TableName"])
        try:
            ddb.create_table(**args)
        except ddb.exceptions.ResourceInUseException:
            continue  # exists: left as it is
        if (ttl := props.get("TimeToLiveSpecification") or {}).get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
        if (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled"):
            ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": True})
    return names


def create_queues(endpoint_url: str, resolver: Resolver) -> dict[str, str]:
    """Create the template's SQS queues (by their local names); return {logical id: queue URL}."""
    sqs, urls = client("sqs", endpoint_url), {}
    for logical_id, _ in resolver.resources_of_type("AWS::SQS::Queue"):
        name = resolver.name_of(logical_id)
        urls[logical_id] = sqs.create_queue(QueueName=name, Attributes={
            "FifoQueue": "true"} if name.endswith(".fifo") else {})["QueueUrl"]
    return urls


def create_email_identities(endpoint_url: str, emails: list[str]) -> None:
    """SES v2 email identities (SendEmail from an address without one is rejected)."""
    ses = client("sesv2", endpoint_url)
    for email in emails:
        try:
            ses.create_email_identity(EmailIdentity=email)
        except ses.exceptions.AlreadyExistsException:
            pass


def port_is_free(port: int) -> bool:
    import socket

    try:
        socket.create_server(("127.0.0.1", port)).close()  # with SO_REUSEADDR, as servers bind
        return True
    except OSError:
        return False


def serve(args) -> int:
    if not port_is_free(args.port):
        print(f"local_aws: port {args.port} on 127.0.0.1 is already in use; stop what holds it "
              f"or choose another port (LOCAL_AWS_PORT=...).", file=sys.stderr)
        return 2
    import logging
    import signal

    import moto_workarounds
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("MOTO_PORT", str(args.port))
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    moto_workarounds.apply()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    if not moto_workarounds.start_server(server):
        print(f"local_aws: moto server did not start on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print("ready", flush=True)

    def until_stdin_closes():  # os.read: a buffered reader's lock would hang the exit
        while os.read(0, 65536):
            pass
        stop.set()

    if args.exit_on_stdin_eof:
        threading.Thread(target=until_stdin_closes, daemon=True).start()
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def sent_emails(endpoint_url: str) -> list[dict]:
    """The emails moto's SES recorded, oldest first: {"id", "from", "to", "subject", "body"}.
    The portal sends only simple (not raw) emails with a text body."""
    with urllib.request.urlopen(endpoint_url.rstrip("/") + "/moto-api/data.json", timeout=30) as r:
        messages = json.load(r).get("ses", {}).get("Message", [])
    return [{"id": m.get("id"), "from": m.get("source"), "subject": m.get("subject") or "",
             "to": [a for addresses in (m.get("destinations") or {}).values() for a in addresses],
             "body": m.get("body") or ""} for m in messages]


def print_emails(args) -> int:
    try:
        emails = sent_emails(args.endpoint_url)
    except (urllib.error.URLError, OSError) as e:
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
    template, ddb = load_template(args.template), client("dynamodb", args.endpoint_url)
    names = [name for stack_name in args.stack_name
             for name in create_tables(args.endpoint_url, stack_name, template, ddb)]
    if names and not args.quiet:
        print("\n".join(names))
    create_email_identities(args.endpoint_url, args.email_identity or [])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local_aws.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run moto server in this process")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--exit-on-stdin-eof", action="store_true", help="also stop when stdin closes")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=serve)
    tables = sub.add_parser("create-tables", help="create the template's DynamoDB tables")
    tables.add_argument("--stack-name", action="append", required=True, help="(repeatable)")
    tables.add_argument("--template", default=TEMPLATE)
    tables.add_argument("--email-identity", action="append", help="also create this SES identity")
    tables.add_argument("--quiet", action="store_true", help="do not print the table names")
    tables.set_defaults(func=create_tables_command)
    emails = sub.add_parser("emails", help="print the emails sent so far (make emails)")
    emails.set_defaults(func=print_emails)
    for p in (tables, emails):
        p.add_argument("--endpoint-url", required=True)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
