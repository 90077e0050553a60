"""The outbox lease and the function that holds it, read together (issue 19, item 7): the lease
outlasts any run of send-email (so no two runs send one message), a delivery's wait for another
run's lease fits inside a run, and the stream's retries, each spending that wait, outlast a lease
(so a record whose lease outlived a crashed run is sent, not put in the failure queue)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import local_aws  # noqa: E402

OUTBOX = (ROOT / "shared" / "src" / "domain" / "outbox.rs").read_text()


def constant(name: str) -> int:
    match = re.search(rf"pub const {name}: i64 = (\d+);", OUTBOX)
    assert match, f"{name} is not in shared/src/domain/outbox.rs"
    return int(match.group(1))


def test_the_lease_outlasts_a_run_and_the_retries_outlast_the_lease():
    template = local_aws.load_template()
    function = template["Resources"]["SendEmailFunction"]["Properties"]
    timeout = int(function.get("Timeout", template["Globals"]["Function"]["Timeout"]))
    mapping = function["Events"]["OutboxStream"]["Properties"]
    retries = int(mapping["MaximumRetryAttempts"])
    lease, wait = constant("LEASE_SECS"), constant("BUSY_WAIT_SECS")
    assert lease >= 2 * timeout, "a run still holding its lease could see another run send"
    assert wait <= timeout - 5, "the wait leaves the delivery itself a few seconds of the run"
    assert retries * wait >= lease, "the stream's retries could run out inside one lease"
