"""make load at a tiny scale, so that it cannot rot: scripts/load.py starts its own stack, seeds a
handful of users, runs two operations of every kind, and must find no error, every kind's
DynamoDB calls counted and sized, and nothing lost on the way to SES and the bus; its units file
(what make cost prices) holds every operation."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_a_tiny_day_runs_clean_and_counts_every_kind(tmp_path):
    report_file, units_file = tmp_path / "load.json", tmp_path / "units.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load.py"), "--scale", "0.001",
         "--min-per-kind", "2", "--concurrency", "2", "--max-seconds", "120",
         "--json", str(report_file), "--log", str(tmp_path / "stack.log"),
         "--units-json", str(units_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    assert report["problems"] == []
    kinds = {k["kind"]: k for k in report["kinds"]}
    assert set(kinds) == set(json.loads(json.dumps(report["run"]["counts"]))), kinds.keys()
    for kind, summary in kinds.items():
        assert summary["count"] >= 2 and summary["errors"] == 0, summary
        if kind != "public page":  # every other kind reads or writes DynamoDB
            assert summary["ddb_calls_request_path"] > 0, summary
            assert summary["rru"] + summary["wru"] > 0, summary
    # A registration's confirmation email and event go out through send-email, after the request.
    assert kinds["register"]["ddb_calls_send_email"] > 0
    delivery = report["delivery"]
    assert delivery["unsettled"] == 0 and delivery["events_missing"] == 0
    assert delivery["emails_sent_by_ses"] == delivery["emails_in_outbox_sent"] > 0
    assert report["month"]["total"]["usd"] > 0
    assert "RESULT: ok" in run.stdout
    # What make cost prices (scripts/cost.py --units): every operation of the profile, with the
    # events, emails and log lines it caused; the custom metrics send-email logs.
    units = json.loads(units_file.read_text())
    assert set(units["operations"]) == set(kinds)
    register = units["operations"]["register"]
    assert register["events"] == 1 and register["emails"] == 1 and register["outbox_items"] == 2
    assert register["log_lines"] > 0 and register["log_bytes"] > 0
    assert units["operations"]["sign in, TOTP"]["kms"] == 1
    assert units["stored_bytes_per_user"] > 0 and 0 < units["session_item_bytes"] < 1024
    assert ["Portal", "OldestMessageAgeSeconds", ["Stack"]] in units["custom_metrics"]
