#!/usr/bin/env python3
"""IAM coverage: every AWS call a function made in the tests, held against its role in
infra/template.yaml.

  iam_coverage.py CALLS.jsonl...   each file is scripts/aws_recorder.py's record of one local stack,
                                   named <stack name>.jsonl (make test writes them)

For each function (the SDK app id of the call, which is the Lambda function's name, locally the
binary's) every recorded action, with its resource's ARN as the stack names it (a table or index, a
KMS key, an event bus, an SES identity, a Secrets Manager secret), must be
allowed by an Allow statement of that function's role: the AWS::IAM::Role its `Role` names (or the
one SAM would make for it), read from SAM's own translation of the template
(scripts/sam_translate.py in .venv-sam): its inline policies (SAM policy templates expanded) and
the AWS managed policies it attaches. What Lambda itself does with the role (read the stream of a
DynamoDB event, send to its OnFailure queue, write its logs) is added as required too. A missing
grant fails (exit status 1); grants that nothing used are reported, with a statement's Sid, so
that they can be dropped. Prints one line per (function, action, resource)."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import local_aws  # noqa: E402

REGION, ACCOUNT = local_aws.REGION, local_aws.ACCOUNT_ID
# The AWS managed policies the roles attach (as AWS publishes them: not in the template).
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
# X-Ray).
UNRECORDABLE = re.compile(r"^(logs|xray):.*")
SAM_PYTHON = os.path.join(local_aws.ROOT, ".venv-sam", "bin", "python")


class Resolver(local_aws.Resolver):
    """local_aws.Resolver plus the Fn::GetAtt of ARNs, as the local stack's names give them, and
    Fn::Sub with variables and `${Resource.Attribute}` (as SAM's policy templates write them)."""

    FUNCTIONS = {**local_aws.Resolver.FUNCTIONS, "Fn::GetAtt": lambda self, a: self.get_att(a)}

    def sub(self, arg) -> str:
        text, variables = (arg[0], self.resolve(arg[1])) if isinstance(arg, list) else (arg, {})

        def value(name: str) -> str:
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.get_att(name))
            return str(self.ref(name))
        return re.sub(r"\$\{([^}!]+)\}", lambda m: value(m.group(1)), text)

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


@functools.cache
def sam_translated(**given: str) -> dict:
    """infra/template.yaml as SAM translates it (once per process and set of parameters), with the
    local parameter values and those `given` (e.g. Tracing="true"). `check`'s own `template`
    argument does not reach it: the roles are always the checkout's template's."""
    import subprocess

    parameters = {**local_aws.LOCAL_PARAMETERS, "AlarmEmail": "alarms@example.com", **given}
    done = subprocess.run([SAM_PYTHON, os.path.join(local_aws.ROOT, "scripts", "sam_translate.py"),
                           json.dumps(parameters)], capture_output=True, text=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the SAM translation failed (scripts/setup.sh --sam makes .venv-sam): "
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout)


class Role:
    """The Allow statements of one function's role, each with where it comes from: the role as
    SAM's translation of the template gives it (`translated`, by default the local parameters'),
    whether the function names a role of the template's own or SAM makes one for it."""

    def __init__(self, function_id: str, resolver: Resolver, translated: dict | None = None):
        resources = (translated or sam_translated())["Resources"]
        self.statements: list[tuple[str, dict]] = []  # (origin, statement)
        self.role_id = role_of(resources, function_id)
        role_props = resources[self.role_id]["Properties"]
        for policy in role_props.get("Policies") or []:
            self.add_document(f"{self.role_id}/{policy.get('PolicyName')}",
                              resolver.resolve(policy["PolicyDocument"]))
        for arn in resolver.resolve(role_props.get("ManagedPolicyArns") or []):
            self.add_managed(arn.rsplit("/", 1)[-1])

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


def role_of(translated_resources: dict, function_id: str) -> str:
    """The logical id of the role a function of the translated template runs with (its `Role`:
    a role of the template's own, or the one SAM made)."""
    role = translated_resources[function_id]["Properties"]["Role"]["Fn::GetAtt"]
    return role[0] if isinstance(role, list) else role.split(".")[0]


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


# A secret's full ARN: its name, "-" and six random characters (Secrets Manager adds them).
FULL_SECRET_ARN = re.compile(r"^arn:[^:]+:secretsmanager:[^:]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$")


def secret_arn(secret_id: str) -> str:
    """The ARN IAM holds a Secrets Manager call against: always the secret's full ARN, whether the
    call named it by that, by a partial ARN (no suffix) or by its name; for the latter two a
    stand-in suffix is added (a grant must allow it: `<name>-*` or `<name>*` does, `<name>` alone
    does not)."""
    if FULL_SECRET_ARN.match(secret_id):
        return secret_id
    name = secret_id.split(":secret:", 1)[1] if secret_id.startswith("arn:") else secret_id
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-Ab12Cd"


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
    if action.startswith("secretsmanager:") and call.get("secret"):
        return action, secret_arn(call["secret"]), {}
    if action == "ses:SendEmail":
        context = {"ses:fromaddress": call.get("from"), "ses:apiversion": "2"}
        return action, f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{call.get('from')}", context
    return action, "*", {}


def requirements_of(call: dict, resolver: Resolver) -> list[tuple[str, str, dict]]:
    """What a recorded call needs of the role: its own requirement, and for an email sent through
    SES v2 also SendEmail on the configuration set, which SES applies as the sender identity's
    default and authorizes like the identity (the request does not name it)."""
    needs = [requirement_of(call, resolver)]
    if needs[0][0] == "ses:SendEmail":
        for logical_id, _ in resolver.resources_of_type("AWS::SES::ConfigurationSet"):
            name = resolver.name_of(logical_id)
            needs.append(("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{name}",
                          needs[0][2]))
    return needs


def platform_requirements(function_id: str, resolver: Resolver) -> list[tuple[str, str, dict]]:
    """What Lambda does with the function's role: write its logs, read the stream of a DynamoDB
    event and send to its OnFailure queue, and send a failed asynchronous invocation (an SNS
    delivery) to its EventInvokeConfig's OnFailure queue."""
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
    invoke_failure = ((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure")
    if invoke_failure and invoke_failure.get("Type") == "SQS":
        needs.append(("sqs:SendMessage", resolver.resolve(invoke_failure["Destination"]), {}))
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
        needs = [(call.get("function"), *need, call) for call in calls
                 for need in requirements_of(call, resolver)]
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
