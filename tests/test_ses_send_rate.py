"""The SES sending rate the local moto reports: moto's 1 a second unless `local_aws.py serve
--ses-max-send-rate N` says otherwise (the Rust tests' moto reports SES's production default, 14).
See report_ses_max_send_rate in scripts/moto_workarounds.py."""

from __future__ import annotations

import subprocess
import sys

import boto3
from moto import mock_aws
from moto.ses.models import SESQuota

import moto_workarounds
from conftest import ROOT, free_port

KW = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def max_send_rate(**kw) -> float:
    return boto3.client("ses", **KW, **kw).get_send_quota()["MaxSendRate"]


def test_moto_still_reports_one_email_a_second():
    with mock_aws():
        assert max_send_rate() == 1, ("moto no longer reports 1 email a second: make run and pytest "
                                      "now pace at its new rate; check the README's pacing notes")


def test_the_setting_reports_the_chosen_rate(monkeypatch):
    moto_workarounds.report_ses_max_send_rate(14, patch=monkeypatch.setattr)
    with mock_aws():
        assert max_send_rate() == 14
    assert SESQuota(0).max24_hour_send == 200, "the rest of the quota is moto's"


def test_serve_reports_the_rate_it_is_given():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "local_aws.py"), "serve", "--port", str(port),
         "--exit-on-stdin-eof", "--ses-max-send-rate", "14"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        assert max_send_rate(endpoint_url=f"http://127.0.0.1:{port}") == 14
    finally:
        server.stdin.close()
        server.wait(timeout=30)
