#!/usr/bin/env python3
"""The local portal stack: `make run` runs this file; the pytest suite imports it.

It checks the ports and tools, starts the local AWS endpoint (local_aws.py serve: moto), creates
the tables, queues and SES identities of infra/template.yaml, seeds the administrator (`cargo run
-q --bin portal-admin -- create-admin --email admin@example.com`, password on stdin), starts
`cargo lambda watch` with the functions' environment from the template (parameter defaults, table
names) and the local endpoint, warms every function, relays the DynamoDB streams that trigger
functions (stream_relay.py), and stops all it started on Ctrl-C (SIGINT, SIGTERM, SIGHUP).

make run: PORTAL_PORT (9000), LOCAL_AWS_PORT (4566), PORTAL_STACK_NAME (portal-local) and
PORTAL_ADMIN_PASSWORD (violet-harbor-lantern-42); a function setting of the template set in the
environment (PORTAL_REQUIRE_CONFIRMATION=true, RUST_LOG=debug...) overrides its default.

pytest: start_stack(portal_port, moto_port, stack_name, settings={...}, log_path=...) returns a
Stack: portal_url, aws_endpoint, portal_port, admin_email, admin_password, env (the functions'),
tables (by logical id), relays (.delivered, .discarded, .invocations), emails()
(local_aws.sent_emails), stop() (or `with`). A failed step raises StackError after cleaning up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib.util import find_spec

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import local_aws  # noqa: E402  (beside this file)
from local_aws import ROOT, StackError, say  # noqa: E402

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD = "admin@example.com", "violet-harbor-lantern-42"
LOCAL_MAX_RETRIES = 10  # what MaximumRetryAttempts -1 (until the record expires) means locally
# What Lambda takes for the settings of a DynamoDB event source mapping that the template omits.
MAPPING_DEFAULTS = {"BatchSize": 100, "FunctionResponseTypes": [], "MaximumRetryAttempts": -1,
                    "BisectBatchOnFunctionError": False, "FilterCriteria": {}}
# Variables of the developer's shell that would point the AWS SDK somewhere else.
AWS_VARS_TO_DROP = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN",
                    "AWS_WEB_IDENTITY_TOKEN_FILE")


def dig(value, *keys) -> dict:
    for key in keys:
        value = (value or {}).get(key)
    return value or {}


class Plan:
    """The local stack described by infra/template.yaml, for one stack name and settings."""

    def __init__(self, stack_name: str, portal_port: int, moto_port: int,
                 settings: dict | None = None):
        self.template = local_aws.load_template()
        self.aws_endpoint, self.portal_port = f"http://127.0.0.1:{moto_port}", portal_port
        functions = {k: v for k, v in (self.template.get("Resources") or {}).items()
                     if v.get("Type") == "AWS::Serverless::Function"}
        raw_env = dict(dig(self.template, "Globals", "Function", "Environment", "Variables"))
        for fn in functions.values():
            raw_env.update(dig(fn, "Properties", "Environment", "Variables"))
        settings = {"PORTAL_BASE_URL": f"http://localhost:{portal_port}", **(settings or {})}
        # A setting (by variable name) of a variable that is a parameter sets the parameter, so
        # that every use of it in the template (e.g. the sender's SES identity) agrees; others
        # are ignored.
        self.resolver = local_aws.Resolver(self.template, stack_name, {
            v["Ref"]: str(settings[var]) for var, v in raw_env.items() if var in settings
            and isinstance(v, dict) and v.get("Ref") in (self.template.get("Parameters") or {})})
        self.env = {k: str(v) for k, v in self.resolver.resolve(raw_env).items()}
        self.env.update(AWS_ENDPOINT_URL=self.aws_endpoint, AWS_REGION=local_aws.REGION,
                        AWS_DEFAULT_REGION=local_aws.REGION, AWS_ACCESS_KEY_ID="test",
                        AWS_SECRET_ACCESS_KEY="test")
        self.tables = {lid: props["TableName"] for lid, props in self.resolver.tables().items()}
        # HTTP functions: a GET path to warm each; stream-triggered functions: what to relay.
        self.warm_paths: dict[str, str] = {}
        self.stream_sources: list[dict] = []
        for logical_id, fn in functions.items():
            binary = dig(fn, "Metadata", "BuildProperties").get("Binary") or logical_id
            for event in dig(fn, "Properties", "Events").values():
                props = dig(event, "Properties")
                path = str(props.get("Path", ""))
                if (event.get("Type") in ("HttpApi", "Api") and "{" not in path
                        and str(props.get("Method", "")).upper() in ("GET", "ANY")):
                    self.warm_paths.setdefault(binary, path)
                elif event.get("Type") == "DynamoDB":
                    self.stream_sources.append(self.stream_source(logical_id, binary, props))

    def stream_source(self, logical_id: str, binary: str, props: dict) -> dict:
        """The StreamRelay arguments for a function's `Type: DynamoDB` event (its event source
        mapping): the table behind its Stream, a `!GetAtt <Table>.StreamArn`, the queue of its
        OnFailure destination (if any), a `!GetAtt <Queue>.Arn`, and its settings."""
        from stream_relay import parse_filters

        p = {**MAPPING_DEFAULTS, **self.resolver.resolve(props)}
        retries = int(p["MaximumRetryAttempts"])
        queue = dig(props, "DestinationConfig", "OnFailure").get("Destination")
        return {
            "function": binary, "table": self.tables[props["Stream"]["Fn::GetAtt"][0]],
            "batch_size": int(p["BatchSize"]),
            "report_failures": "ReportBatchItemFailures" in p["FunctionResponseTypes"],
            "max_retries": retries if retries >= 0 else LOCAL_MAX_RETRIES,
            "bisect": str(p["BisectBatchOnFunctionError"]).lower() == "true",
            "filters": parse_filters(p["FilterCriteria"],
                                     f"template: the DynamoDB event of {logical_id}"),
            "on_failure_queue": self.resolver.name_of(queue["Fn::GetAtt"][0]) if queue else None,
        }


def preflight(portal_port: int, moto_port: int) -> None:
    """Clear messages for what would otherwise fail obscurely later."""
    problems = [f"PORTAL_PORT and LOCAL_AWS_PORT are both {portal_port}: choose two ports."
                ] if portal_port == moto_port else []
    if shutil.which("cargo") is None:
        problems.append("`cargo` is not on PATH: install the Rust toolchain (https://rustup.rs) "
                        "or add ~/.cargo/bin to PATH.")
    if not all(os.access(os.path.join(VENV_BIN, t), os.X_OK) for t in ("python", "cargo-lambda")):
        problems.append(f"the tools of {VENV_BIN} are missing: run `scripts/setup.sh` "
                        f"(make run and make test do it).")
    elif not all(find_spec(m) for m in ("botocore", "cfnlint", "moto", "requests")):
        problems.append(f"{sys.executable} lacks the venv's modules: run this with "
                        f"{VENV_BIN}/python after `scripts/setup.sh`.")
    if problems:
        raise StackError("\n".join(problems))


def parent_death_signal():
    """A preexec_fn that makes the child get SIGTERM when the thread that started it dies, so that
    cargo lambda watch does not outlive a killed stack.py (Linux; None elsewhere). libc is loaded
    here, in the parent: a preexec_fn must not import after fork."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def kill_group(proc: subprocess.Popen, name: str, grace: float = 8.0) -> None:
    """SIGTERM the process group of proc (started in its own session), then SIGKILL what is left
    of it (cargo lambda watch ends its functions' processes when it ends)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        say(f"{name} did not stop within {grace:.0f}s; killing it")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


class Stack:
    """A running local stack; see the module docstring."""

    def __init__(self, plan: Plan, stack_name: str, admin_password: str, log_path: str | None):
        self.plan, self.stack_name, self.portal_port = plan, stack_name, plan.portal_port
        self.portal_url = f"http://localhost:{plan.portal_port}"
        self.aws_endpoint, self.env = plan.aws_endpoint, dict(plan.env)
        self.tables, self.relays = dict(plan.tables), []
        self.admin_email, self.admin_password = ADMIN_EMAIL, admin_password
        self._log_path = log_path
        self._log = open(log_path, "ab", buffering=0) if log_path else None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._stopping, self._lock = threading.Event(), threading.Lock()
        self._env_file = None

    def _child_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in AWS_VARS_TO_DROP}
        return {**env, "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""), **self.env}

    def _spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", self._log)
        proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=self._log, **kw)
        with self._lock:
            self._procs.append((name, proc))
        return proc

    def _see_log(self) -> str:
        return f"; see {self._log_path}" if self._log_path else "; see its messages above"

    def start_moto(self) -> None:
        port = self.aws_endpoint.rsplit(":", 1)[1]
        # Its stdin stays open while we live: moto also ends if this process dies abruptly.
        proc = self._spawn("local AWS (moto)", [
            sys.executable, os.path.join(ROOT, "scripts", "local_aws.py"), "serve", "--port", port,
            "--exit-on-stdin-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=self._child_env())
        line = proc.stdout.readline()  # "ready", or nothing if it gave up (its own 30 s limit)
        threading.Thread(target=shutil.copyfileobj, daemon=True, args=(
            proc.stdout, self._log or sys.stdout.buffer)).start()
        if line.strip() != b"ready":
            raise StackError(f"the local AWS endpoint (moto server) did not start on port {port}"
                             + self._see_log())

    def create_resources(self) -> None:
        local_aws.create_resources(self.aws_endpoint, self.plan.resolver)

    def seed_admin(self) -> None:
        argv = ["cargo", "run", "-q", "--bin", "portal-admin", "--", "create-admin", "--email",
                self.admin_email]
        shown = " ".join(argv)
        say(f"seeding the administrator: {shown} (password on stdin; the first build can take a "
            f"few minutes)")
        try:
            result = subprocess.run(argv, cwd=ROOT, env=self._child_env(), timeout=1800,
                                    input=(self.admin_password + "\n").encode(),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except subprocess.TimeoutExpired:
            raise StackError(f"seeding the administrator timed out: `{shown}`") from None
        output = result.stdout.decode(errors="replace").strip()
        if self._log:
            self._log.write(f"$ {shown}\n{output}\n".encode())
        if result.returncode != 0:
            hint = ("\nThe workspace has no `portal-admin` binary yet (tools/portal-admin)."
                    if "no bin target named" in output else "")
            raise StackError(f"seeding the administrator failed: `{shown}` exited "
                             f"{result.returncode}.{hint}\n--- its output ---\n{output[-4000:]}")

    def start_watch(self) -> None:
        # The functions' settings reach them through cargo lambda's own environment, except
        # RUST_LOG: set for cargo lambda itself, it would make its own logging verbose.
        env = self._child_env()
        rust_log = env.pop("RUST_LOG", "")
        if "'" in rust_log or "\n" in rust_log:
            raise StackError(f"RUST_LOG={rust_log!r}: a value with a quote or a line break cannot "
                             f"be passed to cargo lambda watch")
        fd, self._env_file = tempfile.mkstemp(prefix=f"{self.stack_name}-", suffix=".env")
        with os.fdopen(fd, "w") as f:
            f.write(f"RUST_LOG='{rust_log}'\n")
        self._spawn("cargo lambda watch", [
            "cargo", "lambda", "watch", "-A", "127.0.0.1", "-P", str(self.portal_port),
            "--concurrency", "4", "--disable-cors", "--env-file", self._env_file],
            stdin=subprocess.DEVNULL, env=env, preexec_fn=parent_death_signal()
            if threading.current_thread() is threading.main_thread() else None)
        deadline = time.monotonic() + 120  # ready once it listens (it builds a function lazily)
        while time.monotonic() < deadline:
            self._check_children()
            try:
                return socket.create_connection(("127.0.0.1", self.portal_port), timeout=2).close()
            except OSError:
                time.sleep(0.2)
        raise StackError(f"cargo lambda watch did not answer on port {self.portal_port} in 120s")

    def warm(self) -> None:
        """Build and start every function now rather than on a person's first click: HTTP
        functions with a GET, stream-triggered ones with an empty batch."""
        import requests

        base = f"http://127.0.0.1:{self.portal_port}"
        calls = [(f, "GET", base + path, f"GET {path}") for f, path in self.plan.warm_paths.items()]
        calls += [(s["function"], "POST", f"{base}/2015-03-31/functions/{s['function']}/"
                   "invocations", "an empty stream batch") for s in self.plan.stream_sources]
        for function, method, url, what in calls:
            say(f"building and starting {function} ({what})...")
            started = time.monotonic()
            try:
                r = requests.request(method, url, headers={"Accept": "text/html"}, timeout=1800,
                                     json={"Records": []} if method == "POST" else None)
            except requests.RequestException as e:
                say(f"warning: {function} did not answer {what}: {e}")
                continue
            self._check_children()
            took = time.monotonic() - started
            if r.status_code >= (300 if method == "POST" else 500):
                say(f"warning: {function} answered {what} with {r.status_code} after {took:.0f}s: "
                    f"{r.text[:300]}")
            else:
                say(f"{function} is up ({r.status_code} after {took:.1f}s)")

    def start_relays(self) -> None:
        from stream_relay import StreamRelay

        for source in self.plan.stream_sources:
            self.relays.append(StreamRelay(self, **source))
            self.relays[-1].start()
            say(f"relaying the stream of {source['table']} to {source['function']}")

    def first_dead_child(self) -> str | None:
        with self._lock:
            return next((f"{name} exited (status {proc.returncode})" for name, proc in self._procs
                         if proc.poll() is not None), None)

    def _check_children(self) -> None:
        if (dead := self.first_dead_child()) and not self._stopping.is_set():
            raise StackError(f"{dead} unexpectedly" + self._see_log())

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
            kill_group(proc, name)
            if proc.stdin:
                proc.stdin.close()
        with contextlib.suppress(OSError, TypeError):
            os.unlink(self._env_file)
        if self._log:
            self._log.close()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def emails(self) -> list[dict]:
        """Emails sent through the local SES so far (see local_aws.sent_emails)."""
        return local_aws.sent_emails(self.aws_endpoint)


def start_stack(portal_port: int = 9000, moto_port: int = 4566, stack_name: str = "portal-local",
                *, settings: dict | None = None, admin_password: str | None = None,
                log_path: str | None = None, warm: bool = True) -> Stack:
    """Start the whole local stack and return its handle; raise StackError if a step fails.

    settings: function settings by variable name (e.g. {"PORTAL_REQUIRE_CONFIRMATION": "true"})
    overriding the template's defaults. log_path: a file for the children's output (default: this
    process's stdout/stderr). warm: build and start every function before returning."""
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


def port_from_env(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise StackError(f"{name}={value!r} is not a port number")
    return int(value)


def main() -> int:
    stop_signal, signals, stack = [], (signal.SIGINT, signal.SIGTERM, signal.SIGHUP), None

    def on_signal(signum, _frame):
        stop_signal.append(signum)
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        raise KeyboardInterrupt

    for sig in signals:
        signal.signal(sig, on_signal)
    try:
        portal_port, moto_port = port_from_env("PORTAL_PORT", 9000), port_from_env(
            "LOCAL_AWS_PORT", 4566)
        stack_name = os.environ.get("PORTAL_STACK_NAME") or "portal-local"
        say(f"starting the local stack {stack_name!r}...")
        # Function settings come from the environment: the template's variables for parameters.
        stack = start_stack(portal_port, moto_port, stack_name, settings={
            k: v for k, v in os.environ.items() if v}, admin_password=os.environ.get(
            "PORTAL_ADMIN_PASSWORD"))
        port_var = "" if moto_port == 4566 else f"LOCAL_AWS_PORT={moto_port} "
        print(f"\nPortal: {stack.portal_url}  Local AWS: {stack.aws_endpoint}  "
              f"Admin: {stack.admin_email} / {stack.admin_password}\n"
              f"Emails sent so far: {port_var}make emails  (or .venv/bin/python "
              f"scripts/local_aws.py emails --endpoint-url {stack.aws_endpoint})\n"
              f"Ctrl-C stops everything.\n", flush=True)
        while not (dead := stack.first_dead_child()):
            time.sleep(1)
        raise StackError(f"{dead}; stopping the stack")
    except KeyboardInterrupt:
        say("stopping...")
        return 0 if stop_signal else 130
    except StackError as e:
        print(f"\nmake run: {e}", file=sys.stderr)
        return 1
    finally:
        for sig in signals:  # signals during the clean-up must not interrupt it
            signal.signal(sig, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            say("stopped.")


if __name__ == "__main__":
    sys.exit(main())
