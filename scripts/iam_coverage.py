#!/usr/bin/env python3
"""IAM coverage: every AWS call a function made in the tests, held against its role in
infra/template.yaml.

  iam_coverage.py CALLS.jsonl...   each file is scripts/aws_recorder.py's record of one local stack,
                                   named <stack name>.jsonl (make test writes them)

For each function (the SDK app id of the call, which is the Lambda function's name, locally the
binary's) every recorded action, with its table or index ARN as the stack names them, must be
allowed by an Allow statement of that function's role: the inline statements and SAM policy
templates of `Policies`, or the policies of the AWS::IAM::Role its `Role` names, plus what SAM
adds to a role it makes. What Lambda itself does with the role (read the stream of a DynamoDB event,
send to its OnFailure queue, write its logs) is added as required too. A missing grant fails (exit
status 1); grants that nothing used are reported, with a statement's Sid, so that they can be
dropped. Prints one line per (function, action, resource)."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import local_aws  # noqa: E402

REGION, ACCOUNT = local_aws.REGION, local_aws.ACCOUNT_ID
# What SAM adds to the role it makes for a function (AWS managed policies, as AWS publishes them).
MANAGED = {
    "AWSLambdaBasicExecutionRole": [{"Effect": "Allow", "Resource": "*", "Action": [
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]}],
    "AWSLambdaDynamoDBExecutionRole": [{"Effect": "Allow", "Resource": "*", "Action": [
        "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
        "dynamodb:ListStreams", "logs:CreateLogGroup", "logs:CreateLogStream",
        "logs:PutLogEvents"]}],
    "AWSXrayWriteOnlyAccess": [{"Effect": "Allow", "Resource": "*", "Action": [
        "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
        "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"]}],
}
# Grants whose use the local stack cannot record, never reported as unused: Lambda's own (logs,
# X-Ray), and SendEmail on the configuration set, which SES applies as the sender identity's
# default (not named in the request).
UNRECORDABLE = re.compile(r"^(logs|xray):.*|^ses:SendEmail arn:[^ ]*:configuration-set/.*")


class Resolver(local_aws.Resolver):
    """local_aws.Resolver plus the Fn::GetAtt of ARNs, as the local stack's names give them."""

    def get_att(self, arg):
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        kind = self.resources[logical_id]["Type"]
        name = self.name_of(logical_id)
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return table_arn(name)
        if kind == "AWS::DynamoDB::Table" and attribute == "StreamArn":
            return table_arn(name) + "/stream/2026-01-01T00:00:00.000"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return name
        if kind == "AWS::Events::EventBus" and attribute == "Arn":
            return bus_arn(name)
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"
        return f"arn:aws:local:{REGION}:{ACCOUNT}:{logical_id}/{attribute}"

    FUNCTIONS = {**local_aws.Resolver.FUNCTIONS, "Fn::GetAtt": lambda self, a: self.get_att(a)}

    def sub(self, text):
        if isinstance(text, list):  # Fn::Sub [template, {name: value}]
            template, names = text
            values = {k: self.resolve(v) for k, v in names.items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values
                          else self.sub_one(m.group(1)), template)
        return re.sub(r"\$\{([^}!]+)\}", lambda m: self.sub_one(m.group(1)), text)

    def sub_one(self, name: str) -> str:
        if "." in name and not name.startswith("AWS::"):
            return str(self.get_att(name))
        return str(self.ref(name))


def table_arn(name: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    return f"{arn}/index/{index}" if index else arn


def bus_arn(name: str) -> str:
    """An EventBridge bus's ARN from its name (or the ARN, as PutEvents also takes)."""
    return name if name.startswith("arn:") else f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"


def sam_policy_template(name: str, args: dict, resolver: Resolver) -> list[dict]:
    """The SAM policy templates this template uses, as SAM expands them (its policy_templates.json)."""
    if name == "DynamoDBStreamReadPolicy":
        table, stream = args["TableName"], args["StreamName"]
        base = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        return [{"Effect": "Allow", "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                               "dynamodb:GetShardIterator"],
                 "Resource": f"{base}/stream/{stream}"},
                {"Effect": "Allow", "Action": ["dynamodb:ListStreams"], "Resource": f"{base}/stream/*"}]
    if name == "SQSSendMessagePolicy":
        return [{"Effect": "Allow", "Action": ["sqs:SendMessage*"],
                 "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{args['QueueName']}"}]
    raise ValueError(f"iam_coverage.py does not know the SAM policy template {name}: add it")


class Role:
    """The Allow statements of one function's role, each with where it comes from."""

    def __init__(self, function_id: str, resolver: Resolver):
        template_fn = resolver.resources[function_id]
        props = template_fn.get("Properties") or {}
        globals_fn = (resolver.template.get("Globals") or {}).get("Function") or {}
        self.statements: list[tuple[str, dict]] = []  # (origin, statement)
        role = props.get("Role")
        if role is not None:
            role_id = role["Fn::GetAtt"][0] if isinstance(role.get("Fn::GetAtt"), list) \
                else role["Fn::GetAtt"].split(".")[0]
            role_props = resolver.resources[role_id]["Properties"]
            for policy in role_props.get("Policies") or []:
                self.add_document(f"{role_id}/{policy.get('PolicyName')}",
                                  resolver.resolve(policy["PolicyDocument"]))
            for arn in resolver.resolve(role_props.get("ManagedPolicyArns") or []):
                self.add_managed(arn.rsplit("/", 1)[-1])
            return
        # A role SAM makes: the basic execution policy, what the function's events need, tracing.
        self.add_managed("AWSLambdaBasicExecutionRole")
        for event in (props.get("Events") or {}).values():
            if event["Type"] == "DynamoDB":
                self.add_managed("AWSLambdaDynamoDBExecutionRole")
                dest = (event["Properties"].get("DestinationConfig") or {}).get("OnFailure")
                if dest:
                    self.add("SAM OnFailure destination", {
                        "Effect": "Allow", "Action": "sqs:SendMessage",
                        "Resource": resolver.resolve(dest["Destination"])})
        # SAM adds the X-Ray policy for Tracing Active, and for any intrinsic (an !If) whatever
        # it resolves to (seen in samtranslator's output for this template).
        tracing = props.get("Tracing", globals_fn.get("Tracing"))
        if tracing == "Active" or isinstance(tracing, dict):
            self.add_managed("AWSXrayWriteOnlyAccess")
        for policy in props.get("Policies") or []:
            if isinstance(policy, str):
                self.add_managed(policy)
            elif "Statement" in policy:
                self.add_document("Policies", resolver.resolve(policy))
            else:
                ((name, args),) = policy.items()
                for st in sam_policy_template(name, resolver.resolve(args), resolver):
                    self.add(f"SAM {name}", st)

    def add_managed(self, name: str) -> None:
        for st in MANAGED[name]:
            self.add(f"managed {name}", st)

    def add_document(self, origin: str, document: dict) -> None:
        statements = document["Statement"]
        for st in statements if isinstance(statements, list) else [statements]:
            self.add(origin, st)

    def add(self, origin: str, statement: dict) -> None:
        if statement.get("Effect") != "Allow":
            raise ValueError(f"{origin}: only Allow statements are understood")
        if "NotAction" in statement or "NotResource" in statement:
            raise ValueError(f"{origin}: NotAction/NotResource are not understood")
        self.statements.append((origin, statement))

    def allowing(self, action: str, resource: str, context: dict) -> list[tuple[str, dict]]:
        return [(origin, st) for origin, st in self.statements
                if any(wildcard(a, action, case=False) for a in as_list(st["Action"]))
                and any(wildcard(r, resource) for r in as_list(st["Resource"]))
                and conditions_hold(st.get("Condition") or {}, context)]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def wildcard(pattern: str, value: str, case: bool = True) -> bool:
    """IAM's matching: * any run of characters (slashes too), ? one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def conditions_hold(condition: dict, context: dict) -> bool:
    """StringEquals and StringLike on keys the request gives; any other condition fails (so that
    a grant the check cannot evaluate is never taken as covering a call)."""
    for operator, keys in condition.items():
        for key, expected in keys.items():
            actual = context.get(key.lower())
            if actual is None or operator not in ("StringEquals", "StringLike"):
                return False
            match = (lambda p, v: p == v) if operator == "StringEquals" else wildcard
            if not any(match(str(p), str(actual)) for p in as_list(expected)):
                return False
    return True


def kms_key_arn(key: str, resolver: Resolver | None) -> str:
    """The ARN of the template's key that a call named (by the alias the functions use)."""
    if resolver is not None:
        for _, res in resolver.resources_of_type("AWS::KMS::Alias"):
            props = res["Properties"]
            target = props["TargetKeyId"]
            if resolver.resolve(props["AliasName"]) == key and isinstance(target, dict) and "Ref" in target:
                return resolver.get_att([target["Ref"], "Arn"])
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}"


def requirement_of(call: dict, resolver: Resolver | None = None) -> tuple[str, str, dict]:
    """(action, resource ARN, condition context) of a recorded call."""
    action = call["action"]
    if action.startswith("kms:") and call.get("key"):
        # The grants' conditions read the request's encryption context (kms:EncryptionContext:<k>).
        context = {f"kms:encryptioncontext:{k}".lower(): v
                   for k, v in (call.get("encryption_context") or {}).items()}
        return action, kms_key_arn(call["key"], resolver), context
    if action.startswith("dynamodb:") and call.get("table"):
        return action, table_arn(call["table"], call.get("index")), {}
    if action == "events:PutEvents":
        return action, bus_arn(call.get("bus") or "default"), {}
    if action == "ses:SendEmail":
        context = {"ses:fromaddress": call.get("from"), "ses:apiversion": "2"}
        return action, f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{call.get('from')}", context
    return action, "*", {}


def platform_requirements(function_id: str, resolver: Resolver) -> list[tuple[str, str, dict]]:
    """What Lambda does with the function's role: write its logs, read the stream of a DynamoDB
    event and send to its OnFailure queue."""
    props = resolver.resources[function_id]["Properties"]
    group = (props.get("LoggingConfig") or {}).get("LogGroup")
    group = resolver.resolve(group) if group else f"/aws/lambda/{function_id}"
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:2026/01/01/[$LATEST]0"
    needs = [("logs:CreateLogStream", stream, {}), ("logs:PutLogEvents", stream, {})]
    for event in (resolver.resources[function_id]["Properties"].get("Events") or {}).values():
        if event["Type"] != "DynamoDB":
            continue
        stream = resolver.resolve(event["Properties"]["Stream"])
        for action in ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams"):
            needs.append((f"dynamodb:{action}", stream, {}))
        dest = (event["Properties"].get("DestinationConfig") or {}).get("OnFailure")
        if dest:
            needs.append(("sqs:SendMessage", resolver.resolve(dest["Destination"]), {}))
    return needs


def functions_of(template: dict) -> dict[str, str]:
    """Binary (the function name locally) -> logical id."""
    return {(res.get("Metadata") or {}).get("BuildProperties", {}).get("Binary", lid): lid
            for lid, res in (template.get("Resources") or {}).items()
            if res.get("Type") == "AWS::Serverless::Function"}


def check(calls_by_stack: dict[str, list[dict]], template: dict | None = None,
          out=sys.stdout) -> int:
    """Print the coverage table and the unused grants; return the number of problems."""
    template = template or local_aws.load_template()
    functions = functions_of(template)
    problems = 0
    used: dict[str, set] = defaultdict(set)  # function -> {(statement index, action pattern, resource pattern)}
    seen_functions: set[str] = set()
    roles: dict[str, Role] = {}  # of the first stack, whose name is roles_stack
    roles_stack = ""
    rows: Counter = Counter()
    for stack_name, calls in calls_by_stack.items():
        resolver = Resolver(template, stack_name)
        stack_roles = {binary: Role(lid, resolver) for binary, lid in functions.items()}
        if not roles:
            roles, roles_stack = stack_roles, stack_name
        needs = [(call.get("function"), *requirement_of(call, resolver), call) for call in calls]
        needs += [(binary, *need, None) for binary, lid in functions.items()
                  for need in platform_requirements(lid, resolver)]
        for function, action, resource, context, call in needs:
            if function is None or function == "portal-admin":
                if call and call.get("rust_sdk") and function is None:
                    print(f"UNATTRIBUTED {action} {resource}: a Rust SDK call without an app id "
                          f"(is the function's AWS_LAMBDA_FUNCTION_NAME set?)", file=out)
                    problems += 1
                continue
            if function not in stack_roles:
                print(f"UNKNOWN FUNCTION {function}: {action} {resource}", file=out)
                problems += 1
                continue
            if call is not None:
                seen_functions.add(function)
            if "?" in action.split(":", 1)[1][:1]:
                print(f"UNKNOWN OPERATION {function}: {action} (add it to aws_recorder.py)",
                      file=out)
                problems += 1
                continue
            generic = resource.replace(stack_name, "<stack>")
            allowed = stack_roles[function].allowing(action, resource, context)
            rows[(function, action, generic, "ok" if allowed else "MISSING",
                  "calls" if call else "Lambda's")] += 1
            for origin, st in allowed:
                idx = stack_roles[function].statements.index((origin, st))
                for a in as_list(st["Action"]):
                    for r in as_list(st["Resource"]):
                        if wildcard(a, action, case=False) and wildcard(r, resource):
                            used[function].add((idx, a, str(r).replace(stack_name, "<stack>")))
    for (function, action, resource, verdict, kind), count in sorted(rows.items()):
        what = f"{count} calls" if kind == "calls" else "Lambda's use of the role"
        print(f"{verdict:8} {function:18} {action:28} {resource}  ({what})", file=out)
        problems += verdict == "MISSING"
    for binary in functions:
        if binary not in seen_functions and calls_by_stack:
            print(f"NO CALLS {binary}: no AWS call of this function was recorded", file=out)
            problems += 1
    unused = []
    for binary, role in roles.items():
        for idx, (origin, st) in enumerate(role.statements):
            for a in as_list(st["Action"]):
                for r in as_list(st["Resource"]):
                    generic = str(r).replace(roles_stack, "<stack>")
                    if (idx, a, generic) not in used[binary] and not UNRECORDABLE.match(f"{a} {r}"):
                        sid = st.get("Sid") or origin
                        unused.append(f"UNUSED   {binary:18} {a:28} {generic}  ({sid})")
    for line in unused:
        print(line, file=out)
    print(f"iam_coverage: {sum(rows.values())} calls checked, {problems} problems, "
          f"{len(unused)} unused grants", file=out)
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    calls_by_stack = {}
    for path in argv:
        with open(path, encoding="utf-8") as f:
            calls_by_stack[os.path.basename(path).removesuffix(".jsonl")] = [
                json.loads(line) for line in f if line.strip()]
    return 1 if check(calls_by_stack) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
