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
  6. waits for the portal, warms each HTTP function (cargo lambda builds a function on its first
     request), and relays DynamoDB stream records to the functions the template triggers from a
     table stream (none until a function has a `Type: DynamoDB` event);
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
                    self.stream_sources.append({
                        "function": binary,
                        "table": self.tables[table_id],
                        "batch_size": int(self.resolver.resolve(props.get("BatchSize", 100))),
                        "report_failures": "ReportBatchItemFailures" in (
                            self.resolver.resolve(props.get("FunctionResponseTypes") or [])),
                        "max_retries": int(self.resolver.resolve(
                            props.get("MaximumRetryAttempts", 3))),
                    })


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
        self._relays: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------

    def _child_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in _AWS_VARS_TO_DROP}
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        env.update(self.env)
        return env

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
        argv = ["cargo", "lambda", "watch", "-A", "127.0.0.1", "-P", str(self.portal_port),
                "--concurrency", "4", "--disable-cors"]
        on_main = threading.current_thread() is threading.main_thread()
        self._spawn("cargo lambda watch", argv, stdin=subprocess.DEVNULL, env=self._child_env(),
                    preexec_fn=_parent_death_signal_setter() if on_main else None)
        # The watch server answers an unrouted path itself (404) without building anything.
        url = f"http://127.0.0.1:{self.portal_port}/__stack_ready"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self._check_children()
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
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

    def start_relays(self) -> None:
        for source in self.plan.stream_sources:
            relay = StreamRelay(self, **source)
            relay.start()
            self._relays.append(relay)
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
        for relay in self._relays:
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


class StreamRelay(threading.Thread):
    """Reads one table's stream from the local endpoint and invokes a function with batches of
    records through cargo lambda's invoke API, honouring ReportBatchItemFailures and retrying a
    failed batch up to max_retries times before skipping it."""

    def __init__(self, stack: Stack, function: str, table: str, batch_size: int,
                 report_failures: bool, max_retries: int):
        super().__init__(name=f"relay-{table}", daemon=True)
        self.stack, self.function, self.table = stack, function, table
        self.batch_size, self.report_failures, self.max_retries = (
            batch_size, report_failures, max_retries)
        self.invoke_url = (f"http://127.0.0.1:{stack.portal_port}/2015-03-31/functions/"
                           f"{function}/invocations")

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # noqa: BLE001
            if not self.stack._stopping.is_set():
                _say(f"stream relay for {self.table} stopped: {e!r}")

    def _run(self) -> None:
        endpoint = self.stack.aws_endpoint
        ddb = local_aws.client("dynamodb", endpoint)
        streams = local_aws.client("dynamodbstreams", endpoint)
        stream_arn = ddb.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        iterators: dict[str, str | None] = {}
        pending: list[dict] = []
        attempts = 0
        stopping = self.stack._stopping
        next_shard_scan = 0.0
        while not stopping.is_set():
            if time.monotonic() >= next_shard_scan:
                for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"][
                        "Shards"]:
                    if shard["ShardId"] not in iterators:
                        iterators[shard["ShardId"]] = streams.get_shard_iterator(
                            StreamArn=stream_arn, ShardId=shard["ShardId"],
                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                next_shard_scan = time.monotonic() + 10
            for shard_id, iterator in list(iterators.items()):
                if iterator is None or len(pending) >= self.batch_size:
                    continue
                resp = streams.get_records(ShardIterator=iterator, Limit=1000)
                iterators[shard_id] = resp.get("NextShardIterator")
                for record in resp.get("Records", []):
                    record = _lambda_shape(record)
                    record["eventSourceARN"] = stream_arn
                    pending.append(record)
            if not pending:
                stopping.wait(0.5)
                continue
            batch = pending[:self.batch_size]
            done = self._invoke(batch)
            if done == len(batch):
                pending = pending[len(batch):]
                attempts = 0
                continue
            pending = pending[done:]
            attempts += 1
            if attempts > self.max_retries:
                skipped = pending[:len(batch) - done]
                pending = pending[len(skipped):]
                attempts = 0
                _say(f"{self.function}: gave up on {len(skipped)} stream record(s) of "
                     f"{self.table} after {self.max_retries} retries")
            stopping.wait(min(0.5 * 2 ** attempts, 10))

    def _invoke(self, batch: list[dict]) -> int:
        """How many records of the batch, from its start, count as processed."""
        body = json.dumps({"Records": batch}).encode()
        req = urllib.request.Request(self.invoke_url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=1800) as r:
                function_error = r.headers.get("X-Amz-Function-Error")
                payload = r.read()
        except urllib.error.HTTPError as e:
            _say(f"{self.function}: invoke failed with HTTP {e.code}: "
                 f"{e.read()[:500].decode(errors='replace')}")
            return 0
        except (urllib.error.URLError, OSError) as e:
            _say(f"{self.function}: invoke failed: {e}")
            return 0
        try:
            result = json.loads(payload) if payload.strip() else None
        except ValueError:
            result = None
        if function_error or (isinstance(result, dict) and "errorType" in result):
            _say(f"{self.function}: function error: {payload[:500].decode(errors='replace')}")
            return 0
        if not self.report_failures or not isinstance(result, dict):
            return len(batch)
        failures = result.get("batchItemFailures") or []
        if not failures:
            return len(batch)
        ids = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
        if any(not i for i in ids):
            return 0  # a malformed failure report fails the whole batch, as in Lambda
        seqs = [r["dynamodb"]["SequenceNumber"] for r in batch]
        positions = [seqs.index(i) for i in ids if i in seqs]
        return min(positions) if positions else 0


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
              f"Emails sent so far: make emails  "
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
