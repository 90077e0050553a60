#!/usr/bin/env python3
"""The local portal stack: `make run` runs this file; the pytest suite imports it.

start_stack() starts the local AWS endpoint (local_aws.py serve: moto) with the tables, queues,
SES identities and event bus (portal-events, with its tap queue) of infra/template.yaml, seeds the
administrator, starts `cargo lambda watch` with the functions' environment from the template and
warms every function, relays the DynamoDB streams that trigger functions (stream_relay.py);
Stack.stop() stops all it started.

make run: PORTAL_PORT (9000), LOCAL_AWS_PORT (4566), PORTAL_STACK_NAME (portal-local) and
PORTAL_ADMIN_PASSWORD (violet-harbor-lantern-42), PORTAL_RECORD_AWS_CALLS (a file: record each
AWS call of a function there, see aws_recorder.py); a function setting of the template set in the
environment (PORTAL_REQUIRE_CONFIRMATION=true, RUST_LOG=debug, PORTAL_OIDC_PROVIDERS='[...]'...)
overrides its default. Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops the stack."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import local_aws  # noqa: E402  (beside this file)
from local_aws import ROOT, StackError, say  # noqa: E402

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
ADMIN_EMAIL, DEFAULT_ADMIN_PASSWORD = "admin@example.com", "violet-harbor-lantern-42"
LOCAL_MAX_RETRIES = 10  # what MaximumRetryAttempts -1 (until the record expires) means locally
# What Lambda takes for the settings of a DynamoDB event source mapping that the template omits.
MAPPING_DEFAULTS = {"BatchSize": 100, "FunctionResponseTypes": [], "MaximumRetryAttempts": -1,
                    "BisectBatchOnFunctionError": False, "FilterCriteria": {}}
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Function settings that the template does not expose (tests set them): passed on as given.
TEST_SETTINGS = ("PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS", "PORTAL_SETTINGS_REFRESH_SECS")
# What stands for each path parameter when a function is warmed through a path that has them (a
# function whose GET routes all take one, e.g. external-sign-in's /signin/external/{provider}).
WARM_PATH_PARAMETER = "warm-up"


def setting_text(value) -> str:
    """A setting's value as an environment variable holds it: a list or an object (the JSON
    settings, PORTAL_OIDC_PROVIDERS) as JSON, anything else as its text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def free_port(avoid=(9000, 4566)) -> int:
    """A loopback port nobody listens on now, other than `make run`'s defaults and `avoid`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def target_dir() -> str:
    """Cargo's target directory of the workspace (CARGO_TARGET_DIR, a config, or target/)."""
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                         capture_output=True, timeout=120, check=True).stdout
    return json.loads(out)["target_directory"]


class Plan:
    """The local stack described by infra/template.yaml, for one stack name and settings."""

    def __init__(self, stack_name: str, portal_port: int, moto_port: int,
                 settings: dict | None = None):
        self.template = local_aws.load_template()
        self.aws_endpoint, self.portal_port = f"http://127.0.0.1:{moto_port}", portal_port
        functions = {k: v for k, v in (self.template.get("Resources") or {}).items()
                     if v.get("Type") == "AWS::Serverless::Function"}
        raw_env = dict(self.template["Globals"]["Function"]["Environment"]["Variables"])
        for fn in functions.values():
            raw_env.update(fn["Properties"].get("Environment", {}).get("Variables", {}))
        settings = {"PORTAL_BASE_URL": f"http://localhost:{portal_port}", **(settings or {})}
        # A setting (by variable name) of a variable that is a parameter sets the parameter, so
        # that every use of it in the template (e.g. the sender's SES identity) agrees; others
        # are ignored.
        self.resolver = local_aws.Resolver(self.template, stack_name, {
            v["Ref"]: setting_text(settings[var]) for var, v in raw_env.items() if var in settings
            and isinstance(v, dict) and v.get("Ref") in (self.template.get("Parameters") or {})})
        self.env = {k: str(v) for k, v in self.resolver.resolve(raw_env).items()}
        self.env.update(AWS_ENDPOINT_URL=self.aws_endpoint, AWS_REGION=local_aws.REGION,
                        AWS_DEFAULT_REGION=local_aws.REGION, AWS_ACCESS_KEY_ID="test",
                        AWS_SECRET_ACCESS_KEY="test")
        self.env.update({name: setting_text(settings[name]) for name in TEST_SETTINGS
                         if name in settings})
        self.tables = {lid: props["TableName"] for lid, props in self.resolver.tables().items()}
        # Every function's binary (what a prebuilt stack builds); HTTP functions: a GET path to
        # warm each, one without parameters where it has one; stream-triggered functions: what to
        # relay.
        self.binaries, self.warm_paths, self.stream_sources = set(), {}, []
        with_parameters = {}
        for logical_id, fn in functions.items():
            binary = fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary", logical_id)
            self.binaries.add(binary)
            for event in fn["Properties"].get("Events", {}).values():
                props = event["Properties"]
                get = event["Type"] == "HttpApi" and props["Method"] == "GET"
                if get and "{" not in props["Path"]:  # a path without parameters
                    self.warm_paths.setdefault(binary, props["Path"])
                elif get:
                    with_parameters.setdefault(binary, re.sub(r"\{[^}]*\}", WARM_PATH_PARAMETER,
                                                              props["Path"]))
                elif event["Type"] == "DynamoDB":
                    self.stream_sources.append(self.stream_source(logical_id, binary, props))
        for binary, path in with_parameters.items():
            self.warm_paths.setdefault(binary, path)

    def stream_source(self, logical_id: str, binary: str, props: dict) -> dict:
        """The StreamRelay arguments for a function's `Type: DynamoDB` event (its event source
        mapping): the table behind its Stream, a `!GetAtt <Table>.StreamArn`, the queue of its
        OnFailure destination (if any), a `!GetAtt <Queue>.Arn`, and its settings."""
        from stream_relay import parse_filters

        p = {**MAPPING_DEFAULTS, **self.resolver.resolve(props)}
        retries = int(p["MaximumRetryAttempts"])
        queue = props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
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


class Stack(Plan):
    """A local stack being started or running: portal_url, portal_port, aws_endpoint, admin_email,
    admin_password, env (the functions'), tables (names by logical id), relays
    (stream_relay.StreamRelay: .delivered, .discarded, .invocations), emails(), stop()."""

    def __init__(self, stack_name: str, portal_port: int, moto_port: int, settings: dict | None,
                 admin_password: str, log_path: str | None, record_calls: str | None = None,
                 prebuilt: bool = False, concurrency: int = 4,
                 ses_max_send_rate: float | None = None, secrets: dict | None = None):
        super().__init__(stack_name, portal_port, moto_port, settings)
        self.prebuilt, self.concurrency = prebuilt, concurrency  # see start_watch
        self.ses_max_send_rate = ses_max_send_rate  # see start_local_aws
        # Secrets Manager secrets (name: value) made before the functions start; their ARNs.
        self.secrets, self.secret_arns = dict(secrets or {}), {}
        # record_calls: a file for scripts/aws_recorder.py's lines (each AWS call of a function);
        # the functions then reach moto through the recording proxy.
        self.record_calls, self.recorder = record_calls, None
        self.stack_name, self.portal_url = stack_name, f"http://localhost:{portal_port}"
        self.admin_email, self.admin_password = ADMIN_EMAIL, admin_password
        self._see_log = f"; see {log_path}" if log_path else "; see its messages above"
        self._log = open(log_path, "ab", buffering=0) if log_path else None  # noqa: SIM115
        self.relays, self._procs = [], []  # StreamRelay threads; (name, Popen) of the children
        self._emails, self._emails_lock = [], threading.Lock()  # read so far, see emails()
        self._stopping, self._env_file = threading.Event(), None

    def _child_env(self) -> dict:
        # No AWS_* variable of the developer's shell (a profile, credentials...) may point the
        # SDK elsewhere: the children get the stack's own.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {**env, "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""), **self.env}

    def _spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", self._log)
        proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=self._log, **kw)
        self._procs.append((name, proc))
        return proc

    def start_local_aws(self) -> None:
        """The moto server, then the template's tables, queues and SES identities on it."""
        port = self.aws_endpoint.rsplit(":", 1)[1]
        # Its stdin stays open while we live: moto also ends if this process dies abruptly.
        rate = ([] if self.ses_max_send_rate is None
                else ["--ses-max-send-rate", str(self.ses_max_send_rate)])
        proc = self._spawn("local AWS (moto)", [
            sys.executable, os.path.join(ROOT, "scripts", "local_aws.py"), "serve", "--port", port,
            "--exit-on-stdin-eof", *rate], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=self._child_env())
        if proc.stdout.readline().strip() != b"ready":  # its only line on stdout
            raise StackError(f"the local AWS endpoint (moto server) did not start on port {port}"
                             + self._see_log)
        local_aws.create_resources(self.aws_endpoint, self.resolver)
        self.secret_arns = local_aws.put_secrets(self.aws_endpoint, self.secrets)
        if self.record_calls:
            from aws_recorder import Recorder

            self.recorder = Recorder(self.aws_endpoint, self.record_calls).start()
            say(f"recording the functions' AWS calls in {self.record_calls}")

    def seed_admin(self) -> None:
        argv = ["cargo", "run", "-q", "--bin", "portal-admin", "--", "create-admin", "--email",
                self.admin_email]
        say(f"seeding the administrator: {' '.join(argv)} (password on stdin; the first build can "
            f"take a few minutes)")
        # Its calls carry the app id portal-admin (not a function: no role to check).
        env = {**self._child_env(), "AWS_SDK_UA_APP_ID": "portal-admin"}
        status = subprocess.run(argv, cwd=ROOT, env=env, timeout=1800, check=False,
                                input=(self.admin_password + "\n").encode(), stdout=self._log,
                                stderr=self._log).returncode
        if status != 0:
            raise StackError(f"seeding the administrator failed (exit status {status})"
                             + self._see_log)

    def start_watch(self) -> None:
        # The functions' settings reach them through cargo lambda's own environment, except
        # RUST_LOG: set for cargo lambda itself, it would make its own logging verbose.
        env = self._child_env()
        if self.recorder:
            env["AWS_ENDPOINT_URL"] = self.recorder.url
        rust_log = env.pop("RUST_LOG", "")
        fd, self._env_file = tempfile.mkstemp(prefix=f"{self.stack_name}-", suffix=".env")
        with os.fdopen(fd, "w") as f:
            f.write(f"RUST_LOG='{rust_log}'\n")
        # cargo lambda starts each function through CARGO (scripts/cargo-run-built): through the
        # runtime relay (scripts/runtime_relay.py: the emulator lost answers without it), and for a
        # prebuilt stack straight from its binary. Run directly, not as `cargo lambda`: cargo
        # would set CARGO to itself.
        watch = [os.path.join(VENV_BIN, "cargo-lambda"), "lambda"]
        env.update(CARGO=os.path.join(ROOT, "scripts", "cargo-run-built"),
                   PORTAL_CARGO=shutil.which("cargo") or "cargo",
                   PORTAL_RUNTIME_RELAY=self.start_runtime_relay())
        if self.prebuilt:
            # The functions are built once here, and each instance runs its binary at once, not
            # through `cargo run`; a change to the code is not picked up until the stack starts
            # again.
            self.build_functions()
            env["PORTAL_BUILT_DIR"] = os.path.join(target_dir(), "debug")
        self._spawn("cargo lambda watch", [
            *watch, "watch", "-A", "127.0.0.1", "-P", str(self.portal_port),
            "--concurrency", str(self.concurrency), "--disable-cors", "--env-file", self._env_file,
            # A prebuilt stack runs its binaries as they are; watching the checkout would only
            # restart every function (killing the requests in flight) when another process writes
            # a file there: `git status` refreshing .git/index did, failing a browser test.
            *(["--ignore-changes"] if self.prebuilt else [])],
            stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120  # ready once it listens (it builds a function lazily)
        while time.monotonic() < deadline:
            self._check_children()
            try:
                return socket.create_connection(("127.0.0.1", self.portal_port), timeout=2).close()
            except OSError:
                time.sleep(0.2)
        raise StackError(f"cargo lambda watch did not answer on port {self.portal_port} in 120s")

    def start_runtime_relay(self) -> str:
        """scripts/runtime_relay.py in front of the emulator's runtime API (see there why); its
        host:port, for scripts/cargo-run-built."""
        proc = self._spawn("runtime relay", [
            sys.executable, os.path.join(ROOT, "scripts", "runtime_relay.py"),
            "--upstream-port", str(self.portal_port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        ready = proc.stdout.readline().split()  # its only line on stdout: `ready <port>`
        if len(ready) != 2 or ready[0] != b"ready":
            raise StackError("the runtime relay (scripts/runtime_relay.py) did not start"
                             + self._see_log)
        return f"127.0.0.1:{ready[1].decode()}"

    def build_functions(self) -> None:
        """Build every function's binary (dev profile), as cargo lambda watch would."""
        functions = sorted(self.binaries)
        argv = ["cargo", "build", "-q", *(f"--bin={f}" for f in functions)]
        status = subprocess.run(argv, cwd=ROOT, env=self._child_env(), timeout=1800, check=False,
                                stdin=subprocess.DEVNULL, stdout=self._log,
                                stderr=self._log).returncode
        if status != 0:
            raise StackError(f"{' '.join(argv)} failed (exit status {status})" + self._see_log)

    def warm(self) -> None:
        """Build and start every function now rather than on a person's first click: HTTP
        functions with a GET, stream-triggered ones with an empty batch."""
        import requests

        base = f"http://127.0.0.1:{self.portal_port}"
        calls = {f: ("GET", base + path) for f, path in self.warm_paths.items()}
        calls.update({s["function"]: ("POST", f"{base}/2015-03-31/functions/{s['function']}/"
                                               "invocations") for s in self.stream_sources})
        for function, (method, url) in calls.items():
            say(f"building and starting {function}...")
            try:
                r = requests.request(method, url, headers={"Accept": "text/html"}, timeout=1800,
                                     json={"Records": []} if method == "POST" else None)
                say(f"{function} is up: it answered {r.status_code}")
            except requests.RequestException as e:
                say(f"warning: {function} did not answer {method} {url}: {e}")
            self._check_children()

    def start_relays(self) -> None:
        from stream_relay import StreamRelay

        for source in self.stream_sources:
            self.relays.append(StreamRelay(self, **source))
            self.relays[-1].start()
            say(f"relaying the stream of {source['table']} to {source['function']}")

    def first_dead_child(self) -> str | None:
        return next((f"{name} exited (status {proc.returncode})" for name, proc in self._procs
                     if proc.poll() is not None), None)

    def _check_children(self) -> None:
        if (dead := self.first_dead_child()) and not self._stopping.is_set():
            raise StackError(f"{dead} unexpectedly" + self._see_log)

    def stop(self) -> None:
        """Stop every process this stack started (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for relay in self.relays:
            relay.join(timeout=5)
        # SIGTERM each child's session (cargo lambda watch and its functions); SIGKILL what is left.
        for name, proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(8)
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within 8s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            if proc.stdin:
                proc.stdin.close()
        if self.recorder:
            self.recorder.stop()
        with contextlib.suppress(OSError, TypeError):
            os.unlink(self._env_file)
        if self._log:
            self._log.close()

    def settle(self, timeout: float = 60) -> None:
        """Waits until every stream relay has delivered each record written so far (retries
        included), so that every email and event they cause is out; StackError after `timeout`
        seconds. What tests wait for before they conclude that something was not sent."""
        deadline = time.monotonic() + timeout
        for relay in self.relays:
            if not relay.wait_settled(max(0.0, deadline - time.monotonic())):
                raise StackError(f"the stream relay of {relay.table} still had records to deliver "
                                 f"after {timeout:.0f}s" + self._see_log)

    def emails(self) -> list[dict]:
        """Emails sent through the local SES so far, oldest first (see local_aws.sent_emails);
        each is read from the endpoint once."""
        with self._emails_lock:
            self._emails += local_aws.sent_emails(self.aws_endpoint, since=len(self._emails))
            return list(self._emails)


def start_stack(portal_port: int = 9000, moto_port: int = 4566, stack_name: str = "portal-local",
                *, settings: dict | None = None, admin_password: str | None = None,
                log_path: str | None = None, record_calls: str | None = None,
                prebuilt: bool = False, concurrency: int = 4,
                ses_max_send_rate: float | None = None, secrets: dict | None = None) -> Stack:
    """Start the whole local stack and return its handle; raise StackError if a step fails.

    settings: function settings by variable name (e.g. {"PORTAL_REQUIRE_CONFIRMATION": "true"})
    overriding the template's defaults. log_path: a file for the children's output (default: this
    process's stdout/stderr). record_calls: a file where each AWS call a function makes is
    recorded (scripts/aws_recorder.py), for scripts/iam_coverage.py. prebuilt: build the
    functions once and start each instance from its binary (seconds faster for each stack), with
    no reload when the code changes (see Stack.start_watch). concurrency: instances of each
    function (cargo lambda watch --concurrency). ses_max_send_rate: the SES sending rate moto
    reports (GetSendQuota's MaxSendRate, which send-email paces to; moto's own is 1 a second).
    secrets: Secrets Manager secrets ({name: SecretString}) made on the local endpoint before the
    functions start, as an operator makes them in AWS: a provider's client secret is named
    `<stack name>/oidc/<provider id>` and its PORTAL_OIDC_PROVIDERS entry names it by
    `"client_secret_arn": local_aws.secret_arn(name)` (a partial ARN, which GetSecretValue takes);
    stack.secret_arns holds the full ARNs."""
    stack = Stack(stack_name, portal_port, moto_port, settings,
                  admin_password or DEFAULT_ADMIN_PASSWORD, log_path, record_calls, prebuilt,
                  concurrency, ses_max_send_rate, secrets)
    try:
        stack.start_local_aws()
        stack.seed_admin()
        stack.start_watch()
        stack.warm()
        stack.start_relays()
    except BaseException:
        stack.stop()
        raise
    return stack


# make run's OpenID Connect provider (npm's oidc-provider, scripts/oidc_provider.mjs) and the
# portal's provider `example` on it, unless PORTAL_OIDC_PROVIDERS says otherwise (OIDC_PORT=0: none).
OIDC_PORT = int(os.environ.get("OIDC_PORT") or 9400)


def local_oidc_provider(portal_port: int):
    """Starts the local provider; returns (its process, the portal's providers setting)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from oidc_provider import start_provider  # noqa: E402  (tests/oidc_provider.py)
    process = start_provider(OIDC_PORT)
    providers = [{"id": "example", "name": "Example ID", "issuer": f"http://localhost:{OIDC_PORT}",
                  "client_id": "portal", "client_secret": "portal-secret"}]
    return process, json.dumps(providers)


def main() -> int:
    stack = None
    provider = None

    def on_signal(_signum, _frame):
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        raise KeyboardInterrupt

    portal_port = int(os.environ.get("PORTAL_PORT") or 9000)
    moto_port = int(os.environ.get("LOCAL_AWS_PORT") or 4566)
    for sig in SIGNALS:
        signal.signal(sig, on_signal)
    try:
        stack_name = os.environ.get("PORTAL_STACK_NAME") or "portal-local"
        say(f"starting the local stack {stack_name!r}...")
        # Function settings come from the environment: the template's variables for parameters.
        settings = {k: v for k, v in os.environ.items() if v}
        have_provider = os.path.isdir(os.path.join(ROOT, "node_modules", "oidc-provider"))
        if OIDC_PORT and have_provider and "PORTAL_OIDC_PROVIDERS" not in settings:
            provider, settings["PORTAL_OIDC_PROVIDERS"] = local_oidc_provider(portal_port)
            say(f"OpenID Connect provider 'example' on http://localhost:{OIDC_PORT} "
                "(oidc-user@example.com / oidc-password-1)")
        stack = start_stack(portal_port, moto_port, stack_name, admin_password=os.environ.get(
            "PORTAL_ADMIN_PASSWORD"), settings=settings,
            record_calls=os.environ.get("PORTAL_RECORD_AWS_CALLS") or None)
        print(f"\nPortal: {stack.portal_url}  Local AWS: {stack.aws_endpoint}  "
              f"Admin: {stack.admin_email} / {stack.admin_password}\n"
              f"Emails sent so far: LOCAL_AWS_PORT={moto_port} make emails\n"
              f"Events published so far: LOCAL_AWS_PORT={moto_port} make events\n"
              f"Ctrl-C stops everything.\n", flush=True)
        while not (dead := stack.first_dead_child()):
            time.sleep(1)
        raise StackError(f"{dead}; stopping the stack")
    except KeyboardInterrupt:
        say("stopping...")
        return 0
    except StackError as e:
        print(f"\nmake run: {e}", file=sys.stderr)
        return 1
    finally:
        for sig in SIGNALS:  # signals during the clean-up must not interrupt it
            signal.signal(sig, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            say("stopped.")
        if provider is not None:
            provider.terminate()


if __name__ == "__main__":
    sys.exit(main())
