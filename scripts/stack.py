#!/usr/bin/env python3
"""The local portal stack: `make run` runs this file; the pytest suite imports it.

What it does, in order:
  1. checks that the ports are free and that cargo and the venv tools are installed;
  2. starts the local AWS endpoint (scripts/local_aws.py serve: moto server);
  3. creates the tables and SES email identities of infra/template.yaml for the stack name;
  4. seeds the administrator: `cargo run -q --bin portal-admin -- create-admin --email admin@example.com`
     with the password on stdin;
  5. starts `cargo lambda watch` (every function, routed as in the workspace Cargo.toml) with the
     functions' environment built from the template (parameter defaults, table names) plus the
     local AWS endpoint and credentials;
  6. waits for the portal, warms each function (cargo lambda builds a function on its first
     request; a stream-triggered one gets an empty batch), and relays DynamoDB stream records to
     the functions the template triggers from a table stream (StreamRelay: the event source
     mapping's filter, batch size, partial batch failures, bisection, retries, record age and
     OnFailure SQS queue, polled every 0.5 s);
  7. stays in the foreground until Ctrl-C (SIGINT/SIGTERM/SIGHUP), then stops all it started.

Command line (make run):  scripts/stack.py
  PORTAL_PORT (9000), LOCAL_AWS_PORT (4566), PORTAL_STACK_NAME (portal-local) and
  PORTAL_ADMIN_PASSWORD (violet-harbor-lantern-42) choose the local values; any function setting
  of the template (PORTAL_REQUIRE_CONFIRMATION=true, RUST_LOG=debug, ...) set in the environment
  overrides its default.

Python API (the pytest suite):
    import stack
    handle = stack.start_stack(portal_port=9100, moto_port=4610, stack_name="portal-pytest",
                               settings={"PORTAL_REQUIRE_CONFIRMATION": "true"},  # optional
                               log_path="/tmp/portal-stack.log")                  # optional
    handle.portal_url       # "http://localhost:9100"
    handle.aws_endpoint     # "http://127.0.0.1:4610"
    handle.admin_email, handle.admin_password
    handle.env              # the functions' environment (table names, settings, AWS_*)
    handle.emails()         # emails sent so far: [{"id", "from", "to", "subject", "body"}]
    handle.relays           # the running StreamRelays (.delivered, .discarded, .invocations)
    handle.queue_urls       # the template's SQS queues by logical id (e.g. SendEmailFailuresQueue)
    handle.stop()           # stops every process it started (also: `with start_stack(...) as h:`)
  start_stack raises StackError with a message for a person when a step fails (after cleaning up).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import local_aws  # noqa: E402  (beside this file)

ROOT = local_aws.ROOT
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
DEFAULT_PORTAL_PORT = 9000
DEFAULT_AWS_PORT = 4566
DEFAULT_STACK_NAME = "portal-local"
ADMIN_EMAIL = "admin@example.com"
DEFAULT_ADMIN_PASSWORD = "violet-harbor-lantern-42"
REGION = local_aws.REGION
# MaximumRetryAttempts -1 (Lambda: retry until the record expires) means this many locally.
LOCAL_MAX_RETRIES = 10

# Variables of the developer's shell that would point the AWS SDK somewhere else.
_AWS_VARS_TO_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                     "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


class StackError(Exception):
    """A step of the start-up failed; the message says which and what to do."""


def _say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# What the template says the local stack needs
# ---------------------------------------------------------------------------------------------

class Plan:
    """The local stack described by infra/template.yaml, for one stack name and settings."""

    def __init__(self, stack_name: str, portal_port: int, moto_port: int,
                 settings: dict | None = None, template: dict | None = None):
        self.template = template or local_aws.load_template()
        self.aws_endpoint = f"http://127.0.0.1:{moto_port}"
        self.portal_port = portal_port
        resources = self.template.get("Resources", {}) or {}
        functions = {k: v for k, v in resources.items()
                     if v.get("Type") == "AWS::Serverless::Function"}
        globals_env = (((self.template.get("Globals", {}) or {}).get("Function", {}) or {})
                       .get("Environment", {}) or {}).get("Variables", {}) or {}
        raw_env = dict(globals_env)
        for fn in functions.values():
            raw_env.update((((fn.get("Properties", {}) or {}).get("Environment", {}) or {})
                            .get("Variables", {}) or {}))

        settings = {k: str(v) for k, v in (settings or {}).items()}
        settings.setdefault("PORTAL_BASE_URL", f"http://localhost:{portal_port}")
        # A setting given by its variable name sets the parameter behind it, so every use of
        # the parameter in the template (e.g. the SES identity of the sender) agrees.
        params = {}
        params_names = set((self.template.get("Parameters", {}) or {}).keys())
        self.setting_names = set()
        for var, value in raw_env.items():
            if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in params_names:
                self.setting_names.add(var)
                if var in settings:
                    params[value["Ref"]] = settings[var]
        self.resolver = local_aws.Resolver(self.template, stack_name, params)

        env = self.resolver.resolve(raw_env)
        env.update({k: v for k, v in settings.items() if k in self.setting_names})
        env.update({
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        })
        self.env = {k: str(v) for k, v in env.items()}

        self.tables = {logical_id: props["TableName"]
                       for logical_id, props in local_aws.table_specs(self.resolver)}
        self.email_identities = []
        for _id, res in self.resolver.resources_of_type("AWS::SES::EmailIdentity"):
            self.email_identities.append(
                self.resolver.resolve((res.get("Properties") or {})["EmailIdentity"]))
        sender = self.env.get("PORTAL_EMAIL_SENDER")
        if sender and sender not in self.email_identities:
            self.email_identities.append(sender)

        # HTTP functions: a GET path to warm each; stream-triggered functions: what to relay.
        self.warm_paths: dict[str, str] = {}
        self.stream_sources: list[dict] = []
        for logical_id, fn in functions.items():
            binary = (((fn.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
                      or logical_id)
            for event in ((fn.get("Properties") or {}).get("Events") or {}).values():
                props = event.get("Properties") or {}
                if event.get("Type") in ("HttpApi", "Api"):
                    path = props.get("Path", "")
                    if (str(props.get("Method", "")).upper() in ("GET", "ANY")
                            and "{" not in path and binary not in self.warm_paths):
                        self.warm_paths[binary] = path
                elif event.get("Type") == "DynamoDB":
                    stream = props.get("Stream")
                    table_id = None
                    if isinstance(stream, dict) and "Fn::GetAtt" in stream:
                        att = stream["Fn::GetAtt"]
                        table_id = att[0] if isinstance(att, list) else str(att).split(".")[0]
                    if table_id not in self.tables:
                        raise StackError(f"template: the DynamoDB event of {logical_id} must name "
                                         f"its stream as !GetAtt <Table>.StreamArn")
                    self.stream_sources.append(self._stream_source(logical_id, binary, table_id,
                                                                   props))

    def _stream_source(self, logical_id: str, binary: str, table_id: str, props: dict) -> dict:
        """What the relay needs from a function's `Type: DynamoDB` event (the event source
        mapping's settings, with Lambda's defaults)."""
        r = self.resolver.resolve
        where = f"template: the DynamoDB event of {logical_id}"
        filters = []
        for f in ((r(props.get("FilterCriteria") or {}) or {}).get("Filters") or []):
            try:
                pattern = json.loads(f["Pattern"])
                _check_pattern(pattern)
            except (KeyError, TypeError, ValueError) as e:
                raise StackError(f"{where} has a filter the local relay cannot apply: {e}") from None
            filters.append(pattern)
        on_failure = None
        destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination")
        if destination is not None:
            att = destination.get("Fn::GetAtt") if isinstance(destination, dict) else None
            queue = att[0] if isinstance(att, list) else None
            res = (self.template.get("Resources") or {}).get(queue) or {}
            if res.get("Type") != "AWS::SQS::Queue":
                raise StackError(f"{where}: the local relay supports an OnFailure destination "
                                 f"given as !GetAtt <Queue>.Arn of an AWS::SQS::Queue")
            on_failure = queue
        max_retries = int(r(props.get("MaximumRetryAttempts", -1)))
        return {
            "function": binary,
            "table": self.tables[table_id],
            "enabled": str(r(props.get("Enabled", True))).lower() != "false",
            "batch_size": int(r(props.get("BatchSize", 100))),
            "report_failures": "ReportBatchItemFailures" in (
                r(props.get("FunctionResponseTypes") or [])),
            # Lambda's -1 (retry until the record expires) is bounded locally.
            "max_retries": max_retries if max_retries >= 0 else LOCAL_MAX_RETRIES,
            "bisect": str(r(props.get("BisectBatchOnFunctionError", False))).lower() == "true",
            "max_record_age": int(r(props.get("MaximumRecordAgeInSeconds", -1))),
            "filters": filters,
            "on_failure_queue": on_failure,
        }


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------

def _parent_death_signal_setter():
    """A preexec_fn that makes the child get SIGTERM if the thread that started it dies, so
    cargo lambda watch does not outlive a killed stack.py (Linux; best effort, None elsewhere).
    libc is loaded here, in the parent: the preexec_fn must not import after fork."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec():
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return preexec


def _kill_group(proc: subprocess.Popen, name: str, grace: float = 8.0) -> None:
    """SIGTERM the process group of proc (it was started in its own session), then SIGKILL."""
    if proc.poll() is None or _group_alive(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (proc.poll() is None or _group_alive(proc.pid)):
            time.sleep(0.1)
        if proc.poll() is None or _group_alive(proc.pid):
            _say(f"{name} did not stop within {grace:.0f}s; killing it")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _port_message(port: int, variable: str, what: str) -> str:
    return (f"Port {port} ({what}, {variable}) is already in use on 127.0.0.1. Stop whatever "
            f"holds it (perhaps another `make run`: see `ss -ltnp 'sport = :{port}'`), or choose "
            f"another port, e.g. `{variable}={port + 1} make run`.")


def preflight(portal_port: int, moto_port: int) -> None:
    """Clear messages for what would otherwise fail obscurely later."""
    problems = []
    if portal_port == moto_port:
        problems.append(f"PORTAL_PORT and LOCAL_AWS_PORT are both {portal_port}: choose two ports.")
    for port, var, what in ((portal_port, "PORTAL_PORT", "the portal"),
                            (moto_port, "LOCAL_AWS_PORT", "the local AWS endpoint")):
        if not local_aws.port_is_free(port):
            problems.append(_port_message(port, var, what))
    if shutil.which("cargo") is None:
        problems.append("`cargo` is not on PATH: install the Rust toolchain (https://rustup.rs) "
                        "or add ~/.cargo/bin to PATH.")
    missing = [t for t in ("python", "cargo-lambda")
               if not os.access(os.path.join(VENV_BIN, t), os.X_OK)]
    if missing:
        problems.append(f"{', '.join(missing)} missing from {VENV_BIN}: run `scripts/setup.sh` "
                        f"(make run and make test do it).")
    else:
        try:
            import botocore  # noqa: F401
            import moto  # noqa: F401
            import yaml  # noqa: F401
        except ImportError as e:
            problems.append(f"{e.name} cannot be imported by {sys.executable}: run this with "
                            f"{VENV_BIN}/python after `scripts/setup.sh`.")
    if problems:
        raise StackError("\n".join(problems))


class Stack:
    """A running local stack; see the module docstring."""

    def __init__(self, plan: Plan, stack_name: str, admin_password: str, log_path: str | None):
        self.plan = plan
        self.stack_name = stack_name
        self.portal_port = plan.portal_port
        self.portal_url = f"http://localhost:{plan.portal_port}"
        self.aws_endpoint = plan.aws_endpoint
        self.env = dict(plan.env)
        self.tables = dict(plan.tables)
        self.admin_email = ADMIN_EMAIL
        self.admin_password = admin_password
        self._log_path = log_path
        self._log = open(log_path, "ab", buffering=0) if log_path else None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._env_file: str | None = None
        self.queue_urls: dict[str, str] = {}  # SQS queues of the template by logical id
        self.relays: list[StreamRelay] = []

    # -- life cycle ------------------------------------------------------------------------

    def _child_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _AWS_VARS_TO_DROP}
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        env.update(self.env)
        return env

    def _write_env_file(self) -> str:
        """The functions' environment as a file for `cargo lambda watch --env-file`."""
        import re
        import tempfile

        # cargo lambda's parser: '...' is literal; "..." keeps $ and backslashes as they are
        # (only \" is an escape), so it carries a value with a ' (the default email subject).
        lines = []
        for key, value in sorted(self.env.items()):
            if re.fullmatch(r"[A-Za-z0-9_./:@+-]*", value):
                lines.append(f"{key}={value}")
            elif "\n" in value or "\r" in value:
                raise StackError(f"{key}: a value with a line break cannot be passed to "
                                 f"cargo lambda watch")
            elif "'" not in value:
                lines.append(f"{key}='{value}'")
            elif '"' not in value and "\\" not in value:
                lines.append(f'{key}="{value}"')
            else:
                raise StackError(f"{key}: a value with both quote characters (or a ' and a "
                                 f"backslash) cannot be passed to cargo lambda watch")
        fd, path = tempfile.mkstemp(prefix=f"{self.stack_name}-", suffix=".env")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        self._env_file = path
        return path

    def _spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        out = self._log if self._log else None
        kw.setdefault("stdout", out)
        kw.setdefault("stderr", out)
        proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, **kw)
        with self._lock:
            self._procs.append((name, proc))
        return proc

    def start_moto(self) -> None:
        port = int(self.aws_endpoint.rsplit(":", 1)[1])
        proc = self._spawn(
            "local AWS (moto)",
            [sys.executable, os.path.join(ROOT, "scripts", "local_aws.py"), "serve",
             "--port", str(port), "--exit-on-stdin-eof"],
            # stdin stays open while we live: moto also ends if this process dies abruptly.
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self._child_env())
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 90
        line = b""
        while time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=0.5):
                line = proc.stdout.readline()
                if line.strip() == b"ready" or not line:
                    break
        sel.close()
        # Keep its stdout drained from now on (it prints nothing more, normally).
        threading.Thread(target=self._drain, args=(proc.stdout,), daemon=True).start()
        if line.strip() != b"ready":
            raise StackError(f"the local AWS endpoint (moto server) did not start on port {port}"
                             + (f"; see {self._log_path}" if self._log_path else
                                "; see its messages above"))

    def _drain(self, pipe) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(65536), b""):
                if self._log:
                    self._log.write(chunk)
                else:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def create_resources(self) -> None:
        ddb = local_aws.client("dynamodb", self.aws_endpoint)
        local_aws.create_tables(self.aws_endpoint, self.stack_name, self.plan.template, ddb=ddb)
        self.queue_urls = local_aws.create_queues(self.aws_endpoint, self.plan.resolver)
        ses = local_aws.client("sesv2", self.aws_endpoint)
        for identity in self.plan.email_identities:
            local_aws.create_email_identity(self.aws_endpoint, identity, ses=ses)

    def seed_admin(self) -> None:
        argv = ["cargo", "run", "-q", "--bin", "portal-admin", "--",
                "create-admin", "--email", self.admin_email]
        shown = " ".join(argv)
        _say(f"seeding the administrator: {shown} (password on stdin; "
             f"the first build can take a few minutes)")
        try:
            result = subprocess.run(argv, cwd=ROOT, env=self._child_env(),
                                    input=(self.admin_password + "\n").encode(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    timeout=1800)
        except subprocess.TimeoutExpired:
            raise StackError(f"seeding the administrator timed out: `{shown}`") from None
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        if self._log:
            self._log.write(f"$ {shown}\n{output}\n".encode())
        if result.returncode != 0:
            hint = ""
            if "no bin target named" in output:
                hint = "\nThe workspace has no `portal-admin` binary yet (tools/portal-admin)."
            raise StackError(
                f"seeding the administrator failed: `{shown}` exited {result.returncode}."
                f"{hint}\n--- its output ---\n{output[-4000:]}")

    def start_watch(self) -> None:
        # The functions get their environment from the file (cargo lambda adds it to its own);
        # cargo lambda itself runs without RUST_LOG, which would make its own logging verbose.
        argv = ["cargo", "lambda", "watch", "-A", "127.0.0.1", "-P", str(self.portal_port),
                "--concurrency", "4", "--disable-cors", "--env-file", self._write_env_file()]
        env = self._child_env()
        env.pop("RUST_LOG", None)
        on_main = threading.current_thread() is threading.main_thread()
        self._spawn("cargo lambda watch", argv, stdin=subprocess.DEVNULL, env=env,
                    preexec_fn=_parent_death_signal_setter() if on_main else None)
        # Ready when it accepts connections (it builds a function only on its first request).
        import socket

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self._check_children()
            try:
                socket.create_connection(("127.0.0.1", self.portal_port), timeout=2).close()
                return
            except OSError:
                time.sleep(0.2)
        raise StackError(f"cargo lambda watch did not answer on port {self.portal_port} "
                         f"within 120s")

    def warm(self) -> None:
        """Build and start each HTTP function now rather than on a person's first click."""
        for function, path in self.plan.warm_paths.items():
            _say(f"building and starting {function} (GET {path})...")
            started = time.monotonic()
            url = f"http://127.0.0.1:{self.portal_port}{path}"
            status = None
            try:
                req = urllib.request.Request(url, headers={"Accept": "text/html"})
                with urllib.request.urlopen(req, timeout=1800) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
            except (urllib.error.URLError, OSError) as e:
                _say(f"warning: {function} did not answer GET {path}: {e}")
                continue
            self._check_children()
            took = time.monotonic() - started
            if status >= 500:
                _say(f"warning: {function} answered GET {path} with {status} after {took:.0f}s "
                     f"(see its log)")
            else:
                _say(f"{function} is up ({status} after {took:.1f}s)")

    def warm_stream_functions(self) -> None:
        """Build and start each stream-triggered function with an empty batch."""
        for source in self.plan.stream_sources:
            function = source["function"]
            _say(f"building and starting {function} (an empty stream batch)...")
            started = time.monotonic()
            url = (f"http://127.0.0.1:{self.portal_port}/2015-03-31/functions/{function}/"
                   f"invocations")
            req = urllib.request.Request(url, data=b'{"Records": []}', method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=1800) as r:
                    r.read()
                _say(f"{function} is up (after {time.monotonic() - started:.1f}s)")
            except urllib.error.HTTPError as e:
                _say(f"warning: {function} failed an empty batch (HTTP {e.code}): "
                     f"{e.read()[:300].decode(errors='replace')}")
            except (urllib.error.URLError, OSError) as e:
                _say(f"warning: {function} did not answer: {e}")
            self._check_children()

    def start_relays(self) -> None:
        for source in self.plan.stream_sources:
            if not source["enabled"]:
                _say(f"not relaying {source['table']} to {source['function']} (Enabled: false)")
                continue
            source = dict(source)
            queue = source.get("on_failure_queue")
            source["on_failure_url"] = self.queue_urls.get(queue) if queue else None
            relay = StreamRelay(self, **source)
            relay.start()
            self.relays.append(relay)
            _say(f"relaying the stream of {source['table']} to {source['function']}")

    def _check_children(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for name, proc in procs:
            if proc.poll() is not None and not self._stopping.is_set():
                raise StackError(f"{name} exited unexpectedly (status {proc.returncode})"
                                 + (f"; see {self._log_path}" if self._log_path else ""))

    def first_dead_child(self) -> str | None:
        with self._lock:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    return f"{name} exited (status {proc.returncode})"
        return None

    def stop(self) -> None:
        """Stop every process this stack started (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for relay in self.relays:
            relay.join(timeout=5)
        with self._lock:
            procs = list(reversed(self._procs))
        for name, proc in procs:
            _kill_group(proc, name)
            if proc.stdin:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        if self._env_file:
            try:
                os.unlink(self._env_file)
            except OSError:
                pass
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- conveniences for tests --------------------------------------------------------------

    def emails(self) -> list[dict]:
        """Emails sent through the local SES so far (see local_aws.sent_emails)."""
        return local_aws.sent_emails(self.aws_endpoint)


def start_stack(portal_port: int = DEFAULT_PORTAL_PORT, moto_port: int = DEFAULT_AWS_PORT,
                stack_name: str = DEFAULT_STACK_NAME, *, settings: dict | None = None,
                admin_password: str | None = None, log_path: str | None = None,
                warm: bool = True) -> Stack:
    """Start the whole local stack and return its handle; raise StackError if a step fails.

    settings: function settings by variable name (e.g. {"PORTAL_REQUIRE_CONFIRMATION": "true"})
    overriding the template's defaults. log_path: a file for the children's output (default: this
    process's stdout/stderr). warm: build and start every HTTP function before returning."""
    preflight(portal_port, moto_port)
    plan = Plan(stack_name, portal_port, moto_port, settings)
    stack = Stack(plan, stack_name, admin_password or DEFAULT_ADMIN_PASSWORD, log_path)
    try:
        stack.start_moto()
        stack.create_resources()
        stack.seed_admin()
        stack.start_watch()
        if warm:
            stack.warm()
            stack.warm_stream_functions()
        stack.start_relays()
    except BaseException:
        stack.stop()
        raise
    return stack


# ---------------------------------------------------------------------------------------------
# DynamoDB stream relay (what Lambda's event source mapping does in AWS)
# ---------------------------------------------------------------------------------------------

def _lambda_shape(value):
    """A get_records record as Lambda delivers it: epoch seconds, base64 binaries."""
    if isinstance(value, dict):
        return {k: _lambda_shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lambda_shape(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


# Lambda event filtering (FilterCriteria): the subset of the EventBridge pattern syntax that
# Lambda accepts for DynamoDB records, applied to the record as the function receives it.
_MISSING = object()
_FILTER_OPERATORS = {"exists", "prefix", "suffix", "anything-but", "numeric",
                     "equals-ignore-case"}


def _check_pattern(pattern) -> None:
    """Raise ValueError for a pattern the relay cannot apply."""
    if not isinstance(pattern, dict) or not pattern:
        raise ValueError(f"a pattern must be a non-empty JSON object: {pattern!r}")
    for key, sub in pattern.items():
        if isinstance(sub, dict):
            _check_pattern(sub)
        elif isinstance(sub, list):
            for rule in sub:
                if isinstance(rule, dict):
                    if len(rule) != 1 or next(iter(rule)) not in _FILTER_OPERATORS:
                        raise ValueError(f"unsupported filter rule {rule!r} under {key!r}")
                elif isinstance(rule, list):
                    raise ValueError(f"nested list under {key!r}")
        else:
            raise ValueError(f"{key!r}: a pattern value must be an object or a list")


def _numeric_ok(spec: list, x) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    ops = {"<": x.__lt__, "<=": x.__le__, "=": x.__eq__, ">": x.__gt__, ">=": x.__ge__}
    return all(ops[spec[i]](spec[i + 1]) for i in range(0, len(spec), 2))


def _rule_matches(rule, value) -> bool:
    if isinstance(rule, dict):
        (op, arg), = rule.items()
        if op == "exists":
            return (value is not _MISSING) == bool(arg)
        if value is _MISSING:
            return False
        values = value if isinstance(value, list) else [value]
        for x in values:
            if op == "prefix" and isinstance(x, str) and x.startswith(arg):
                return True
            if op == "suffix" and isinstance(x, str) and x.endswith(arg):
                return True
            if op == "equals-ignore-case" and isinstance(x, str) and x.lower() == str(arg).lower():
                return True
            if op == "anything-but" and x not in (arg if isinstance(arg, list) else [arg]):
                return True
            if op == "numeric" and _numeric_ok(arg, x):
                return True
        return False
    if value is _MISSING:
        return False
    return any(rule == x and type(rule) is type(x) or (rule is None and x is None)
               for x in (value if isinstance(value, list) else [value]))


def _pattern_matches(pattern: dict, event) -> bool:
    for key, sub in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(sub, dict):
            if value is _MISSING or not _pattern_matches(sub, value):
                return False
        elif not any(_rule_matches(rule, value) for rule in sub):
            return False
    return True


def record_passes_filters(filters: list[dict], record: dict) -> bool:
    """Lambda's rule: no filters passes everything; otherwise any one filter must match."""
    return not filters or any(_pattern_matches(p, record) for p in filters)


class StreamRelay(threading.Thread):
    """Reads one table's stream from the local endpoint and invokes a function with batches of
    records through cargo lambda's invoke API, as Lambda's event source mapping does:
      - records that match none of the FilterCriteria are skipped (never sent);
      - a batch holds up to BatchSize records, each with eventSourceARN;
      - with ReportBatchItemFailures, the records before the lowest reported sequence number are
        done and the batch is retried from that record; a function error (or an unusable answer)
        retries the whole batch, halved first if BisectBatchOnFunctionError is set;
      - after MaximumRetryAttempts retries, or past MaximumRecordAgeInSeconds, the records are
        discarded and, with an OnFailure queue, their batch info is sent to it.
    Retries wait 1, 2, 4, 8, then 10 s; an idle stream is polled every POLL_SECONDS."""

    POLL_SECONDS = 0.5

    def __init__(self, stack: "Stack", function: str, table: str, batch_size: int = 100,
                 report_failures: bool = False, max_retries: int = LOCAL_MAX_RETRIES,
                 bisect: bool = False, max_record_age: int = -1, filters: list | None = None,
                 on_failure_queue: str | None = None, on_failure_url: str | None = None,
                 enabled: bool = True):
        super().__init__(name=f"relay-{table}", daemon=True)
        self.stack, self.function, self.table = stack, function, table
        self.batch_size, self.report_failures, self.max_retries = (
            max(1, batch_size), report_failures, max_retries)
        self.bisect, self.max_record_age = bisect, max_record_age
        self.filters = filters or []
        self.on_failure_url = on_failure_url
        self.invoke_url = (f"http://127.0.0.1:{stack.portal_port}/2015-03-31/functions/"
                           f"{function}/invocations")
        self.function_arn = f"arn:aws:lambda:{REGION}:{local_aws.ACCOUNT_ID}:function:{function}"
        self.stream_arn = ""
        # Counters for tests and logs.
        self.invocations = 0
        self.delivered = 0
        self.discarded = 0

    def run(self) -> None:
        stopping = self.stack._stopping
        while not stopping.is_set():
            try:
                self._run()
                return
            except Exception as e:  # noqa: BLE001 - a hiccup of the endpoint: start over
                if stopping.is_set():
                    return
                _say(f"stream relay for {self.table}: {e!r}; retrying in 2s")
                stopping.wait(2)

    def _run(self) -> None:
        endpoint = self.stack.aws_endpoint
        ddb = local_aws.client("dynamodb", endpoint)
        streams = local_aws.client("dynamodbstreams", endpoint)
        self.stream_arn = ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        iterators: dict[str, str | None] = {}
        pending: list[tuple[str, dict]] = []  # (shard id, record), in stream order
        stopping = self.stack._stopping
        next_shard_scan = 0.0
        attempts = 0
        limit = self.batch_size  # lowered by bisection, back to batch_size after a success
        while not stopping.is_set():
            if time.monotonic() >= next_shard_scan:
                for shard in streams.describe_stream(StreamArn=self.stream_arn)[
                        "StreamDescription"]["Shards"]:
                    if shard["ShardId"] not in iterators:
                        iterators[shard["ShardId"]] = streams.get_shard_iterator(
                            StreamArn=self.stream_arn, ShardId=shard["ShardId"],
                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                next_shard_scan = time.monotonic() + 10
            for shard_id, iterator in list(iterators.items()):
                if iterator is None or len(pending) >= self.batch_size:
                    continue
                resp = streams.get_records(ShardIterator=iterator, Limit=1000)
                iterators[shard_id] = resp.get("NextShardIterator")
                for record in resp.get("Records", []):
                    record = _lambda_shape(record)
                    record["eventSourceARN"] = self.stream_arn
                    if record_passes_filters(self.filters, record):
                        pending.append((shard_id, record))
            pending = self._drop_expired(pending)
            if not pending:
                stopping.wait(self.POLL_SECONDS)
                continue
            # A batch comes from one shard, in order.
            shard_id = pending[0][0]
            batch = []
            for sid, record in pending:
                if sid != shard_id or len(batch) >= limit:
                    break
                batch.append(record)
            done, function_error = self._invoke(batch)
            self.delivered += done
            if done == len(batch):
                pending = pending[len(batch):]
                attempts, limit = 0, self.batch_size
                continue
            pending = pending[done:]
            attempts += 1
            left = len(batch) - done
            if attempts > self.max_retries:
                skipped = [r for _, r in pending[:left]]
                pending = pending[left:]
                self._discard(shard_id, skipped, "RetryAttemptsExhausted", attempts)
                attempts, limit = 0, self.batch_size
                continue
            if function_error and self.bisect and left > 1:
                limit = (left + 1) // 2
            stopping.wait(min(0.5 * 2 ** attempts, 10))

    def _drop_expired(self, pending: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        if self.max_record_age < 0 or not pending:
            return pending
        oldest_allowed = time.time() - self.max_record_age
        kept, expired = [], []
        for sid, record in pending:
            created = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
            if isinstance(created, (int, float)) and created < oldest_allowed:
                expired.append((sid, record))
            else:
                kept.append((sid, record))
        for sid in dict.fromkeys(s for s, _ in expired):
            self._discard(sid, [r for s, r in expired if s == sid], "RecordAgeExceeded", 0)
        return kept

    def _discard(self, shard_id: str, records: list[dict], condition: str, invokes: int) -> None:
        """Give up on records; with an OnFailure queue, send it Lambda's invocation record."""
        if not records:
            return
        self.discarded += len(records)
        seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
        created = [r["dynamodb"].get("ApproximateCreationDateTime") for r in records]

        def iso(t):
            if not isinstance(t, (int, float)):
                return None
            return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")

        where = ""
        if self.on_failure_url:
            import uuid

            message = {
                "requestContext": {"requestId": str(uuid.uuid4()),
                                   "functionArn": self.function_arn, "condition": condition,
                                   "approximateInvokeCount": invokes},
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                                    "functionError": "Unhandled"},
                "version": "1.0",
                "timestamp": iso(time.time()),
                "DDBStreamBatchInfo": {
                    "shardId": shard_id, "startSequenceNumber": seqs[0],
                    "endSequenceNumber": seqs[-1],
                    "approximateArrivalOfFirstRecord": iso(created[0]),
                    "approximateArrivalOfLastRecord": iso(created[-1]),
                    "batchSize": len(records), "streamArn": self.stream_arn},
            }
            try:
                sqs = local_aws.client("sqs", self.stack.aws_endpoint)
                sqs.send_message(QueueUrl=self.on_failure_url, MessageBody=json.dumps(message))
                where = f"; their batch info is in the queue {self.on_failure_url}"
            except Exception as e:  # noqa: BLE001
                where = f"; sending their batch info to {self.on_failure_url} failed: {e!r}"
        reason = (f"after {self.max_retries} retries" if condition == "RetryAttemptsExhausted"
                  else f"older than {self.max_record_age}s")
        _say(f"{self.function}: discarded {len(records)} stream record(s) of {self.table} "
             f"{reason} (sequence numbers {seqs[0]}..{seqs[-1]}){where}")

    def _invoke(self, batch: list[dict]) -> tuple[int, bool]:
        """(how many records of the batch, from its start, count as processed; whether the
        function failed as a whole)."""
        self.invocations += 1
        body = json.dumps({"Records": batch}).encode()
        req = urllib.request.Request(self.invoke_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=1800) as r:
                function_error = r.headers.get("X-Amz-Function-Error")
                payload = r.read()
        except urllib.error.HTTPError as e:
            # cargo lambda watch answers a function error with 500 and the error as the body.
            _say(f"{self.function}: function error (HTTP {e.code}): "
                 f"{e.read()[:500].decode(errors='replace')}")
            return 0, True
        except (urllib.error.URLError, OSError) as e:
            _say(f"{self.function}: invoke failed: {e}")
            return 0, True
        try:
            result = json.loads(payload) if payload.strip() else None
        except ValueError:
            result = None
        if function_error or (isinstance(result, dict) and "errorType" in result):
            _say(f"{self.function}: function error: {payload[:500].decode(errors='replace')}")
            return 0, True
        if not self.report_failures or not isinstance(result, dict):
            return len(batch), False
        failures = result.get("batchItemFailures") or []
        if not failures:
            return len(batch), False
        ids = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
        seqs = [r["dynamodb"]["SequenceNumber"] for r in batch]
        if any(not i or i not in seqs for i in ids):
            # Lambda treats an empty or unknown identifier as a failure of the whole batch.
            _say(f"{self.function}: batchItemFailures names a record not in the batch: {ids}")
            return 0, True
        done = min(seqs.index(i) for i in ids)
        _say(f"{self.function}: {len(batch) - done} of {len(batch)} record(s) reported failed; "
             f"retrying from sequence number {seqs[done]}")
        return done, False


# ---------------------------------------------------------------------------------------------
# make run
# ---------------------------------------------------------------------------------------------

def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError
        return port
    except ValueError:
        raise StackError(f"{name}={value!r} is not a port number") from None


def main() -> int:
    stop_signal = []

    def on_signal(signum, _frame):
        stop_signal.append(signum)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    stack = None
    try:
        portal_port = _int_env("PORTAL_PORT", DEFAULT_PORTAL_PORT)
        moto_port = _int_env("LOCAL_AWS_PORT", DEFAULT_AWS_PORT)
        stack_name = os.environ.get("PORTAL_STACK_NAME") or DEFAULT_STACK_NAME
        password = os.environ.get("PORTAL_ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD
        # Function settings from the environment: the template's variables that are parameters.
        names = Plan(stack_name, portal_port, moto_port).setting_names
        settings = {k: os.environ[k] for k in names if os.environ.get(k)}
        _say(f"starting the local stack {stack_name!r}...")
        stack = start_stack(portal_port, moto_port, stack_name, settings=settings,
                            admin_password=password)
        print(f"\nPortal: {stack.portal_url}  Local AWS: {stack.aws_endpoint}  "
              f"Admin: {stack.admin_email} / {stack.admin_password}\n"
              f"Emails sent so far: "
              f"{'' if moto_port == DEFAULT_AWS_PORT else f'LOCAL_AWS_PORT={moto_port} '}make emails  "
              f"(or .venv/bin/python scripts/local_aws.py emails --endpoint-url "
              f"{stack.aws_endpoint})\n"
              f"Ctrl-C stops everything.\n", flush=True)
        while True:
            dead = stack.first_dead_child()
            if dead:
                raise StackError(f"{dead}; stopping the stack")
            time.sleep(1)
    except KeyboardInterrupt:
        _say("stopping...")
        return 0 if stop_signal else 130
    except StackError as e:
        print(f"\nmake run: {e}", file=sys.stderr)
        return 1
    finally:
        # Signals during the clean-up must not interrupt it.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            _say("stopped.")


if __name__ == "__main__":
    sys.exit(main())
