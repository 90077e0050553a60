"""A recording proxy in front of the local AWS endpoint: which function made which AWS call.

moto enforces no resource-scoped IAM, so the local stack cannot show a missing grant by failing.
Instead, when asked (`start_stack(record_calls=...)`, PORTAL_RECORD_AWS_CALLS for make run), the
functions' AWS_ENDPOINT_URL points at this proxy, which forwards every request to moto unchanged
and appends one JSON line per IAM action the request needs to a file:

  {"function": "sign-in", "action": "dynamodb:PutItem", "table": "...", "index": null, ...}

The function is the SDK's app id (`app/<name>` in the User-Agent), which production code sets from
AWS_LAMBDA_FUNCTION_NAME (shared/src/app.rs) and cargo lambda watch sets per function.
scripts/iam_coverage.py then holds every recorded action against the function's role in
infra/template.yaml. What the request needs is read from the request alone: X-Amz-Target (JSON
protocols: DynamoDB, EventBridge, KMS, Secrets Manager...), the SigV4 credential scope (the service)
and the path (SES v2's REST API), and the body (TableName, IndexName, TransactItems, KeyId,
SecretId, FromEmailAddress...)."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
from urllib.parse import parse_qs, urlsplit

# IAM action of each item kind of a transaction: a transaction needs each item's own action.
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
# SES v2 is a REST API: (method, path pattern) -> action. An unknown route is recorded as
# "ses:?<METHOD> <path>", which iam_coverage.py reports as unknown: add it here then.
SES_V2_ROUTES = [("POST", re.compile(r"^/v2/email/outbound-emails$"), "SendEmail"),
                 ("GET", re.compile(r"^/v2/email/account$"), "GetAccount")]
APP_ID = re.compile(r"(?:^|\s)app/(\S+)")
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


def actions_of_request(method: str, path: str, headers: dict, body: bytes) -> list[dict]:
    """The IAM actions one AWS request needs: [{"action", "table", "index", "from"}, ...]."""
    headers = {k.lower(): v for k, v in headers.items()}
    scope = SCOPE.search(headers.get("authorization", ""))
    service = scope.group(2) if scope else "?"
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    target = headers.get("x-amz-target", "")
    if target:
        operation = target.rsplit(".", 1)[-1]
        if service == "dynamodb":
            return dynamodb_actions(operation, payload)
        if service == "events" and operation == "PutEvents":
            return eventbridge_actions(payload)
        if service == "kms":
            return [{"action": f"kms:{operation}", "key": payload.get("KeyId"),
                     "encryption_context": payload.get("EncryptionContext") or {}}]
        if service == "secretsmanager":
            # GetSecretValue (a provider's client secret): the secret by name or (partial) ARN.
            return [{"action": f"secretsmanager:{operation}", "secret": payload.get("SecretId")}]
        return [{"action": f"{service}:{operation}"}]
    if service == "ses" and method == "POST" and urlsplit(path).path == "/":
        # SES v1 is a query API: the action is a form field (GetSendQuota, for the sending rate).
        action = parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
        if action:
            return [{"action": f"ses:{action}"}]
    if service == "ses":
        route = urlsplit(path).path
        for m, pattern, operation in SES_V2_ROUTES:
            if m == method and pattern.match(route):
                found = {"action": f"ses:{operation}"}
                if operation == "SendEmail":
                    found["from"] = payload.get("FromEmailAddress")
                    found["configuration_set"] = payload.get("ConfigurationSetName")
                return [found]
    return [{"action": f"{service}:?{method} {urlsplit(path).path}"}]


def dynamodb_actions(operation: str, payload: dict) -> list[dict]:
    if operation in ("TransactWriteItems", "TransactGetItems"):
        found = []
        for item in payload.get("TransactItems") or []:
            ((kind, spec),) = item.items()
            found.append({"action": f"dynamodb:{TRANSACT_ACTIONS.get(kind, kind)}",
                          "table": spec.get("TableName")})
        return found
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [{"action": f"dynamodb:{operation}", "table": table}
                for table in payload.get("RequestItems") or {}]
    return [{"action": f"dynamodb:{operation}", "table": payload.get("TableName"),
             "index": payload.get("IndexName")}]


def eventbridge_actions(payload: dict) -> list[dict]:
    """PutEvents needs events:PutEvents on the bus of each entry (a name or an ARN; none: the
    account's default bus)."""
    buses = {entry.get("EventBusName") or "default" for entry in payload.get("Entries") or []
             if isinstance(entry, dict)}
    return [{"action": "events:PutEvents", "bus": bus} for bus in sorted(buses or {"default"})]


def caller_of(headers: dict) -> dict:
    """The app id (function) and whether the Rust SDK made the call (its User-Agent)."""
    agents = " ".join(v for k, v in headers.items() if k.lower() in ("user-agent", "x-amz-user-agent"))
    app = APP_ID.search(agents)
    return {"function": app.group(1) if app else None, "rust_sdk": "aws-sdk-rust" in agents}


class Recorder:
    """The proxy on 127.0.0.1:<free port> (url), forwarding to `upstream`, appending to `path`.
    observer: if set, called for each forwarded request with (method, path, headers, request body,
    response status, response body) once moto has answered and before the function gets the answer
    (scripts/load.py counts capacity units from the bodies)."""

    def __init__(self, upstream: str, path: str):
        target = urlsplit(upstream)
        self.upstream_host, self.upstream_port = target.hostname, target.port
        self.path, self._lock = path, threading.Lock()
        self.observer = None
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by stop()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK expects

            def log_message(self, *_args):  # no line per request
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.record(self.command, self.path, dict(self.headers.items()), body)
                conn = getattr(self.server.local, "conn", None)
                if conn is None:
                    conn = self.server.local.conn = http.client.HTTPConnection(
                        recorder.upstream_host, recorder.upstream_port, timeout=120)
                try:
                    conn.request(self.command, self.path, body=body, headers={
                        k: v for k, v in self.headers.items() if k.lower() != "connection"})
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    self.server.local.conn = None
                    self.send_error(502, "the local AWS endpoint did not answer")
                    return
                if recorder.observer is not None:
                    recorder.observer(self.command, self.path, dict(self.headers.items()), body,
                                      resp.status, data)
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                         "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.local = threading.local()  # one upstream connection per handler thread
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="aws-recorder")

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def record(self, method: str, path: str, headers: dict, body: bytes) -> None:
        caller = caller_of(headers)
        lines = [json.dumps({**caller, **found}) + "\n"
                 for found in actions_of_request(method, path, headers, body)]
        with self._lock:
            self._file.writelines(lines)
            self._file.flush()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            self._file.close()
