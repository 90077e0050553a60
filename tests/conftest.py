"""Fixtures for the end-to-end tests: local stacks (moto server, tables, admin seed and `cargo lambda
watch`) on free ports, so that a developer's `make run` on 9000/4566 can stay up, and a headless
Chromium.

pytest-xdist runs the suite on several workers (`-n`, `--dist loadfile`: a module's tests stay on
one worker). Each worker has its own stacks, named after it (pytest-gw0-e2e: its tables, its log
and its recorder file), and its own Chromium. The stacks a module uses start together, in the
background, when its first test is set up."""

from __future__ import annotations

import concurrent.futures
import json
import os
import threading
import sys
import tempfile
from pathlib import Path

import pytest

from support import ADMIN_PASSWORD, Portal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import stack as stack_script  # noqa: E402  (scripts/stack.py)

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1... under pytest-xdist
# The email allowances of every test stack count in one window of 10^9 s (it ends in May 2033),
# not per clock hour: no window ends while a test counts them.
ALLOWANCE_WINDOW_SECS = str(10**9)


free_port = stack_script.free_port  # tests import it from here

# The local OpenID Connect provider of this worker (scripts/oidc_provider.mjs): started with the
# first stack whose settings ask for it (PORTAL_OIDC_PROVIDERS "local"), stopped with the session.
OIDC_PORT = free_port()
OIDC_ISSUER = f"http://localhost:{OIDC_PORT}"
_oidc = {"process": None, "lock": threading.Lock()}


def local_providers(stack_name: str) -> tuple[str, dict]:
    """The providers of a stack on the local provider, and the secrets they read: `example` (its
    client secret in Secrets Manager, as in AWS), and one client per spoilt ID token."""
    import local_aws
    secret = f"{stack_name}/oidc/example"
    providers = [{"id": "example", "name": "Example ID", "issuer": OIDC_ISSUER, "client_id": "portal",
                  "client_secret_arn": local_aws.secret_arn(secret)}]
    for spoilt, name in (("wrong-aud", "Test wrong audience"), ("expired", "Test expired token"),
                         ("bad-sig", "Test bad signature")):
        providers.append({"id": spoilt, "name": name, "issuer": OIDC_ISSUER, "client_id": f"portal-{spoilt}",
                          "client_secret": "portal-secret"})
    return json.dumps(providers), {secret: "portal-secret"}


def start_local_provider() -> None:
    from oidc_provider import start_provider
    with _oidc["lock"]:
        if _oidc["process"] is None:
            _oidc["process"] = start_provider(OIDC_PORT)


def stop_local_provider() -> None:
    from oidc_provider import stop_provider
    if _oidc["process"] is not None:
        stop_provider(_oidc["process"])


def pytest_configure(config):
    # One directory for the stacks' logs of this run, made by the process that the workers of
    # pytest-xdist are started from (they inherit its environment).
    if not hasattr(config, "workerinput"):
        os.environ["PORTAL_PYTEST_LOGS"] = tempfile.mkdtemp(prefix="portal-pytest-logs-")


def start(stack_name: str, settings: dict | None = None, concurrency: int = 1):
    """Start a local stack on free ports; returns scripts/stack.py's handle (portal_url,
    aws_endpoint, portal_port, admin_email, admin_password, settle(), emails(), stop()).
    concurrency: instances of each function. One starts in about 8 s a stack, four in 30 s
    (cargo lambda starts them a few at a time): four only where tests send requests at once."""
    name = "-".join(filter(None, ("pytest", WORKER, stack_name)))  # pytest-gw0-e2e
    portal_port = free_port()
    moto_port = free_port(avoid=(9000, 4566, portal_port))
    logs = os.environ.get("PORTAL_PYTEST_LOGS") or tempfile.gettempdir()
    fd, log = tempfile.mkstemp(prefix=f"{name}-", suffix=".log", dir=logs)
    os.close(fd)
    # make test records every AWS call of the functions (scripts/aws_recorder.py), a file per
    # stack named after it, for the IAM coverage check (scripts/iam_coverage.py) after the suite.
    calls_dir = os.environ.get("PORTAL_RECORD_AWS_CALLS_DIR")
    record = os.path.join(calls_dir, f"{name}.jsonl") if calls_dir else None
    # Each function reads the run-time site settings at most once a second (a minute in AWS), so
    # that a test sees its change at once.
    settings = {"PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS": ALLOWANCE_WINDOW_SECS, "PORTAL_SETTINGS_REFRESH_SECS": "1",
                **(settings or {})}
    secrets = None
    if settings.get("PORTAL_OIDC_PROVIDERS") == "local":
        start_local_provider()
        settings["PORTAL_OIDC_PROVIDERS"], secrets = local_providers(name)
    # prebuilt: each function instance starts from its binary, not through `cargo run`.
    return stack_script.start_stack(portal_port, moto_port, name, settings=settings,
                                    admin_password=ADMIN_PASSWORD, log_path=log,
                                    record_calls=record, prebuilt=True,
                                    concurrency=concurrency, secrets=secrets)


class Stacks:
    """The stacks of this process, each started and stopped on a thread of its own. Every stack
    fixture that a module's tests use (the session's stack too, if not up yet) starts at once,
    while the test before the module's first runs; a stack fixture waits for its own stack only.
    A module's stacks stop in the background after it; the session waits for them at its end."""

    def __init__(self):
        self.specs: dict[str, tuple] = {}  # fixture name: start()'s arguments
        self._started: dict[str, concurrent.futures.Future] = {}
        self._stopping: list[concurrent.futures.Future] = []
        self._pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="stack")
        self._modules: set = set()

    def start_for(self, item) -> None:
        """Start every stack that the tests of `item`'s module use (once per module)."""
        if item.module in self._modules:
            return
        self._modules.add(item.module)
        used = {name for other in item.session.items if other.module is item.module
                for name in other.fixturenames if name in self.specs}
        for name in sorted(used):
            self._start(name)

    def _start(self, name: str) -> concurrent.futures.Future:
        if name not in self._started:
            self._started[name] = self._pool.submit(start, *self.specs[name])
        return self._started[name]

    def get(self, name: str):
        return self._start(name).result()

    def stop(self, name: str) -> None:
        started = self._started.pop(name, None)
        if started is not None:
            self._stopping.append(self._pool.submit(
                lambda: started.exception() is None and started.result().stop()))

    def stop_all(self) -> None:
        """Stop every stack, and wait until each has stopped (its recorder file complete)."""
        for name in list(self._started):
            self.stop(name)
        for stopping in self._stopping:
            stopping.result()


STACKS = Stacks()


def stack_fixture(name: str, stack_name: str, settings: dict | None = None,
                  scope: str = "module", doc: str = "", concurrency: int = 1):
    """A fixture `name` giving a local stack of its own (`stack_name`, with these function
    settings), started with the other stacks its module uses and stopped at the end of `scope`."""
    STACKS.specs[name] = (stack_name, settings, concurrency)

    def fixture():
        try:
            yield STACKS.get(name)
        finally:
            STACKS.stop(name)

    fixture.__doc__ = doc
    return pytest.fixture(scope=scope, name=name)(fixture)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    STACKS.start_for(item)
    if nextitem is not None:
        STACKS.start_for(nextitem)  # the next module's stacks start while this test runs


def pytest_sessionfinish(session, exitstatus):
    STACKS.stop_all()  # any started for tests that never set them up (skipped); all stopped
    stop_local_provider()


# Every request of the suite comes from 127.0.0.1: per-address allowances must not run out (the
# rate-limit tests have their own stack, rate_limited_stack). Four instances of each function, as
# `make run`: races (parallel registrations, redemptions) run at once.
stack = stack_fixture("stack", "e2e", {"PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": "100000",
                                       "PORTAL_FAILURES_PER_ADDRESS_PER_HOUR": "100000",
                                       "PORTAL_OIDC_PROVIDERS": "local"},
                      scope="session", doc="The stack most tests share (one per worker).",
                      concurrency=4)

HTTPS_BASE = "https://portal.example.test"

closed_https_stack = stack_fixture(
    "closed_https_stack", "closed-https",
    {"PORTAL_OPEN_REGISTRATION": "false", "PORTAL_BASE_URL": HTTPS_BASE},
    doc="A second stack whose registration is closed and whose public base URL is https (served "
        "over plain http locally, so the Secure cookies it sets can still be read here).")


@pytest.fixture(scope="session")
def base_url(stack) -> str:
    return stack.portal_url


@pytest.fixture(scope="session")
def moto_endpoint(stack) -> str:
    return stack.aws_endpoint


@pytest.fixture
def portal(base_url) -> Portal:
    """A fresh client (empty cookie jar) for each test."""
    return Portal(base_url)


@pytest.fixture
def new_portal(base_url):
    """A factory for more independent clients within one test."""
    return lambda: Portal(base_url)


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium per worker; each test's `browser` is a fresh profile in it (see
    test_browser.py)."""
    from browser import Chromium

    browser = Chromium()
    try:
        yield browser
    finally:
        browser.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    logs = os.environ.get("PORTAL_PYTEST_LOGS")
    if logs and exitstatus != 0 and os.listdir(logs):
        terminalreporter.write_line(f"local stack logs: {logs}/")


# --- account self-service (issue 4) ---------------------------------------------------------------

confirmation_stack = stack_fixture(
    "confirmation_stack", "confirmation",
    {"PORTAL_REQUIRE_CONFIRMATION": "true", "PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": "100000"},
    doc="A stack where email confirmation is required before a contact may sign in.")

RATE_LIMITED_PER_ACCOUNT = 2
RATE_LIMITED_PER_ADDRESS = 3

rate_limited_stack = stack_fixture(
    "rate_limited_stack", "rate-limited",
    {"PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR": str(RATE_LIMITED_PER_ACCOUNT),
     "PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": str(RATE_LIMITED_PER_ADDRESS)},
    doc="A stack with small hourly email allowances (per account and per source address).")
