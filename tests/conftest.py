"""Fixtures for the end-to-end tests: one local stack (moto server, tables, admin seed and
`cargo lambda watch`) per test session, on free ports so that a developer's `make run` on
9000/4566 can stay up."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import pytest

from support import ADMIN_PASSWORD, Portal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import stack as stack_script  # noqa: E402  (scripts/stack.py)


# The email allowances of every test stack count in one window of 10^9 s (it ends in May 2033),
# not per clock hour: no window ends while a test counts them.
ALLOWANCE_WINDOW_SECS = str(10**9)


def free_port(avoid=(9000, 4566)) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


STACK_LOGS: list[str] = []


def start(stack_name: str, settings: dict | None = None):
    """Start a local stack on free ports; returns scripts/stack.py's handle (portal_url,
    aws_endpoint, portal_port, admin_email, admin_password, stop())."""
    portal_port = free_port()
    moto_port = free_port(avoid=(9000, 4566, portal_port))
    log = tempfile.NamedTemporaryFile(prefix=f"portal-{stack_name}-", suffix=".log", delete=False)
    log.close()
    STACK_LOGS.append(log.name)
    # make test records every AWS call of the functions (scripts/aws_recorder.py), a file per
    # stack, for the IAM coverage check (scripts/iam_coverage.py) that runs after the suite.
    calls_dir = os.environ.get("PORTAL_RECORD_AWS_CALLS_DIR")
    record = os.path.join(calls_dir, f"pytest-{stack_name}.jsonl") if calls_dir else None
    settings = {"PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS": ALLOWANCE_WINDOW_SECS, **(settings or {})}
    return stack_script.start_stack(portal_port, moto_port, f"pytest-{stack_name}",
                                    settings=settings, admin_password=ADMIN_PASSWORD,
                                    log_path=log.name, record_calls=record)


@pytest.fixture(scope="session")
def stack():
    # Every e2e request comes from 127.0.0.1: a high per-address email allowance keeps the whole
    # suite clear of it (the rate-limit tests have their own stack, rate_limited_stack).
    # Every request of the suite comes from 127.0.0.1: per-address allowances must not run out.
    s = start("e2e", settings={"PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": "100000",
                               "PORTAL_FAILURES_PER_ADDRESS_PER_HOUR": "100000"})
    try:
        yield s
    finally:
        s.stop()


HTTPS_BASE = "https://portal.example.test"


@pytest.fixture(scope="module")
def closed_https_stack():
    """A second stack whose registration is closed and whose public base URL is https (served
    over plain http locally, so the Secure cookies it sets can still be read here)."""
    s = start("closed-https", settings={"PORTAL_OPEN_REGISTRATION": "false",
                                        "PORTAL_BASE_URL": HTTPS_BASE})
    try:
        yield s
    finally:
        s.stop()


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if STACK_LOGS and exitstatus != 0:
        terminalreporter.write_line("local stack logs: " + " ".join(STACK_LOGS))


# --- account self-service (issue 4) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def confirmation_stack():
    """A stack where email confirmation is required before a contact may sign in."""
    s = start("confirmation", settings={"PORTAL_REQUIRE_CONFIRMATION": "true",
                                        "PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": "100000"})
    try:
        yield s
    finally:
        s.stop()


RATE_LIMITED_PER_ACCOUNT = 2
RATE_LIMITED_PER_ADDRESS = 3


@pytest.fixture(scope="module")
def rate_limited_stack():
    """A stack with small hourly email allowances (per account and per source address)."""
    s = start("rate-limited", settings={
        "PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR": str(RATE_LIMITED_PER_ACCOUNT),
        "PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": str(RATE_LIMITED_PER_ADDRESS),
    })
    try:
        yield s
    finally:
        s.stop()
