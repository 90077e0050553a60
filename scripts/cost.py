#!/usr/bin/env python3
"""make cost: the portal's monthly AWS cost per 100,000 monthly active users (MAU), on the usage
profile below, against Amazon Cognito user pools (Lite and Essentials) for the same users.

Inputs, each stated where it is defined:
- MEASURED by `make load` (scripts/load.py: a simulated day on the local stack; MEASURED's
  "measured_at" says when, at which commit and how): per operation its HTTP requests, DynamoDB
  calls, the read and write units DynamoDB bills for them (index writes included, computed from
  the recorded calls and the template's projections), the outbox items, events, emails and KMS
  requests it causes, and the bytes of the functions' log lines; the bytes stored per user; the
  custom metrics send-email publishes. `--units FILE` prices another run instead (make load
  writes .local/load-units.json); `--print-measured FILE` prints a run as the MEASURED literal.
- MEASURED elsewhere: the CPU time of one argon2id hash (`cargo bench -p portal --bench hash`,
  README "Latency and cost"); each function's memory size, the alarms and their metrics
  (infra/template.yaml).
- ASSUMED: the usage profile per MAU, DynamoDB latency per call, the minutes of a signed-in visit,
  the lines Lambda and API Gateway log per request.
- PRICES: us-east-1 list prices with their source and the date they were written down.
Lambda gives a function M/1769 of a vCPU below 1,769 MB, so a CPU-bound hash of C ms of CPU
takes C * 1769 / M ms there; the rest of a request waits on DynamoDB and the other services."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MAU = 100_000

# --- PRICES (USD, us-east-1) --------------------------------------------------------------------
# Read 2026-11-29 from the AWS pricing pages named:
# aws.amazon.com/lambda/pricing: Arm, first 7.5 billion GB-s/month; requests.
LAMBDA_ARM_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
# aws.amazon.com/api-gateway/pricing: HTTP APIs, first 300 million requests/month.
HTTP_API_REQUEST = 1.00 / 1e6
# aws.amazon.com/dynamodb/pricing/on-demand (after the November 2024 price cut).
DDB_WRITE_UNIT = 0.625 / 1e6
DDB_READ_UNIT = 0.125 / 1e6
DDB_STORAGE_GB_MONTH = 0.25
DDB_PITR_GB_MONTH = 0.20
# aws.amazon.com/ses/pricing: outbound email.
SES_EMAIL = 0.10 / 1000
# aws.amazon.com/cloudwatch/pricing: logs ingested (standard class).
LOGS_GB = 0.50
# aws.amazon.com/cognito/pricing: user pools, Lite and Essentials feature plans (since
# 2024-11-22): 10,000 MAU free per account for direct sign-in; then Lite $0.0055/MAU up to
# 100,000 ($0.0046 to 1 million), Essentials $0.015/MAU. (Accounts with user pools from before
# that date may keep a 50,000 MAU free tier.)
COGNITO_FREE_MAU = 10_000
COGNITO_LITE_TIERS = [(100_000, 0.0055), (1_000_000, 0.0046), (10_000_000, 0.00325), (None, 0.0025)]
COGNITO_ESSENTIALS_MAU = 0.015
# Written down 2026-12-07 from the published list prices, not re-read that day (no web access
# from the machine): check them on the pages named before relying on them.
PRICES_WRITTEN = "2026-12-07"
# aws.amazon.com/cloudwatch/pricing: a standard-resolution alarm $0.10 per alarm metric a month
# (an alarm on a metric math expression: each metric in it); custom metrics $0.30 per metric a
# month (the first 10,000); each log event ingested is billed 26 bytes more than its message.
ALARM_METRIC_MONTH = 0.10
CUSTOM_METRIC_MONTH = 0.30
LOG_EVENT_OVERHEAD_BYTES = 26
# aws.amazon.com/kms/pricing: a customer managed key $1 a month (automatic rotation, which the
# template turns on, adds $1 a month for each of the first two yearly rotations: $3 from the
# third year); $0.03 per 10,000 requests (Decrypt, GenerateDataKey...).
KMS_KEY_MONTH = 1.00
KMS_KEY_MONTH_AFTER_ROTATIONS = 3.00
KMS_REQUEST = 0.03 / 10_000
# aws.amazon.com/eventbridge/pricing: custom events put on an event bus, $1.00 per million.
EVENTBRIDGE_EVENT = 1.00 / 1e6
# aws.amazon.com/dynamodb/pricing: the GetRecords calls of a Lambda trigger on a stream are free.
DDB_STREAM_READS_BY_LAMBDA = 0.0
# No free tier is taken off anywhere (Lambda's, CloudWatch's, KMS's 20,000 requests...): an
# account with other workloads has used them.

# --- MEASURED: make load -------------------------------------------------------------------------
# The units per operation of the make load run named in "measured_at" (scripts/load.py writes
# them to .local/load-units.json; `python3 scripts/cost.py --print-measured FILE` prints this).
# Per operation: count (operations measured), http (HTTP requests), ddb_calls (on the request
# path), ddb_calls_send_email (send-email's, afterwards), rru and wru (units as billed: index
# writes included, session touches not), index_wru, by_kind ({what was read or written: [rru,
# wru]}), touches (session idle-timer writes in the run: modelled below instead), outbox_items,
# events, emails, kms (requests), log_lines and log_bytes (the functions' own lines, send-email's
# included); each per operation.
# The run of 2026-12-07 (README "A simulated day"), on commit 0da6b9f with nothing of the
# functions or the template changed (the one uncommitted file, the Makefile, had make load's own
# target changed).
MEASURED = {
    "measured_at": {"date": "2026-12-07", "commit": "0da6b9f6246c", "dirty": ["Makefile"],
        "how": "make load, scale 1, concurrency 4, moto 5.2.5, 2-core x86_64"},
    "operations": {
        "public page": {"count": 200, "http": 1, "ddb_calls": 0, "ddb_calls_send_email": 0,
            "rru": 0, "wru": 0, "index_wru": 0, "touches": 0, "outbox_items": 0, "events": 0,
            "emails": 0, "kms": 0, "log_lines": 0, "log_bytes": 0,
            "by_kind": {}},
        "sign in": {"count": 117, "http": 1, "ddb_calls": 9, "ddb_calls_send_email": 0, "rru": 3,
            "wru": 7, "index_wru": 1, "touches": 0, "outbox_items": 0, "events": 0, "emails": 0,
            "kms": 0, "log_lines": 1, "log_bytes": 300,
            "by_kind": {"contacts:CONTACT": [1, 2], "contacts:DEVICE": [0, 1],
                "contacts:EMAIL": [1, 0], "contacts:RATE": [0, 2], "contacts:TWOFACTOR": [1, 0],
                "sessions": [0, 2]}},
        "sign in, wrong password": {"count": 14, "http": 1, "ddb_calls": 6,
            "ddb_calls_send_email": 0, "rru": 4, "wru": 2, "index_wru": 0, "touches": 0,
            "outbox_items": 0, "events": 0, "emails": 0, "kms": 0, "log_lines": 2, "log_bytes": 514,
            "by_kind": {"contacts:CONTACT": [2, 1], "contacts:EMAIL": [1, 0],
                "contacts:RATE": [0, 1], "contacts:TWOFACTOR": [1, 0]}},
        "sign in, TOTP": {"count": 7, "http": 2, "ddb_calls": 19, "ddb_calls_send_email": 0,
            "rru": 5, "wru": 18, "index_wru": 3, "touches": 0, "outbox_items": 0, "events": 0,
            "emails": 0, "kms": 1, "log_lines": 2, "log_bytes": 615,
            "by_kind": {"contacts:CONTACT": [2, 4], "contacts:DEVICE": [0, 1],
                "contacts:EMAIL": [1, 0], "contacts:RATE": [0, 4], "contacts:TWOFACTOR": [2, 2],
                "sessions": [0, 2], "sessions:PENDING": [0, 5]}},
        "sign in, email code: ask": {"count": 4, "http": 2, "ddb_calls": 14,
            "ddb_calls_send_email": 2, "rru": 6, "wru": 14, "index_wru": 1, "touches": 0,
            "outbox_items": 1, "events": 0, "emails": 1, "kms": 0, "log_lines": 2.25,
            "log_bytes": 758.75,
            "by_kind": {"contacts:CONTACT": [2, 2], "contacts:EMAIL": [1, 0],
                "contacts:RATE": [0, 3], "contacts:TWOFACTOR": [2, 2], "outbox": [0, 4],
                "sessions:PENDING": [1, 3]}},
        "sign in, email code: verify": {"count": 4, "http": 1, "ddb_calls": 11,
            "ddb_calls_send_email": 0, "rru": 2, "wru": 11, "index_wru": 2, "touches": 0,
            "outbox_items": 0, "events": 0, "emails": 0, "kms": 0, "log_lines": 1, "log_bytes": 319,
            "by_kind": {"contacts:CONTACT": [1, 2], "contacts:DEVICE": [0, 1],
                "contacts:RATE": [0, 2], "contacts:TWOFACTOR": [1, 1], "sessions": [0, 2],
                "sessions:PENDING": [0, 3]}},
        "profile view": {"count": 267, "http": 1, "ddb_calls": 2, "ddb_calls_send_email": 0,
            "rru": 2, "wru": 0, "index_wru": 0, "touches": 0, "outbox_items": 0, "events": 0,
            "emails": 0, "kms": 0, "log_lines": 0, "log_bytes": 0,
            "by_kind": {"contacts:CONTACT": [1, 0], "sessions": [1, 0]}},
        "register": {"count": 3, "http": 1, "ddb_calls": 4, "ddb_calls_send_email": 4, "rru": 0,
            "wru": 22, "index_wru": 5, "touches": 0, "outbox_items": 2, "events": 1, "emails": 1,
            "kms": 0, "log_lines": 4.333, "log_bytes": 1515.667,
            "by_kind": {"contacts:CONTACT": [0, 6], "contacts:EMAIL": [0, 2],
                "contacts:RATE": [0, 2], "contacts:TOKEN": [0, 2], "outbox": [0, 8],
                "sessions": [0, 2]}},
        "create invitation": {"count": 3, "http": 1, "ddb_calls": 6, "ddb_calls_send_email": 10.33,
            "rru": 5, "wru": 37.333, "index_wru": 13, "touches": 0, "outbox_items": 3, "events": 2,
            "emails": 1, "kms": 0, "log_lines": 5.667, "log_bytes": 2184.333,
            "by_kind": {"contacts:CONTACT": [1, 6], "contacts:EMAIL": [1, 2],
                "contacts:NOLOGIN": [1, 0], "contacts:PACE": [0, 2.333], "invitations:CODE": [0, 2],
                "invitations:INVITATION": [1, 12], "outbox": [0, 13], "sessions": [1, 0]}},
        "redeem invitation": {"count": 3, "http": 1, "ddb_calls": 7, "ddb_calls_send_email": 4,
            "rru": 3, "wru": 23, "index_wru": 6, "touches": 0, "outbox_items": 2, "events": 2,
            "emails": 0, "kms": 0, "log_lines": 4.333, "log_bytes": 1630.667,
            "by_kind": {"contacts:CONTACT": [1, 2], "contacts:RATE": [0, 2],
                "invitations:CODE": [1, 0], "invitations:INVITATION": [1, 9], "outbox": [0, 8],
                "sessions": [0, 2]}},
        "forgot password": {"count": 3, "http": 1, "ddb_calls": 3, "ddb_calls_send_email": 5,
            "rru": 2, "wru": 10, "index_wru": 0, "touches": 0, "outbox_items": 1, "events": 0,
            "emails": 1, "kms": 0, "log_lines": 2.667, "log_bytes": 908.333,
            "by_kind": {"contacts:CONTACT": [1, 2], "contacts:EMAIL": [1, 0],
                "contacts:RATE": [0, 2], "contacts:TOKEN": [0, 2], "outbox": [0, 4]}},
        "reset password": {"count": 3, "http": 1, "ddb_calls": 6, "ddb_calls_send_email": 4,
            "rru": 3.5, "wru": 13, "index_wru": 0, "touches": 0, "outbox_items": 2, "events": 1,
            "emails": 1, "kms": 0, "log_lines": 3.333, "log_bytes": 1205.667,
            "by_kind": {"contacts:CONTACT": [1, 2], "contacts:NOTICES": [1, 0],
                "contacts:RATE": [0, 1], "contacts:TOKEN": [1, 2],
                "contacts:by-passkey-owner": [0.5, 0], "outbox": [0, 8]}},
        "change password": {"count": 3, "http": 1, "ddb_calls": 9, "ddb_calls_send_email": 4,
            "rru": 4, "wru": 15, "index_wru": 1, "touches": 0, "outbox_items": 2, "events": 1,
            "emails": 1, "kms": 0, "log_lines": 4.333, "log_bytes": 1520.667,
            "by_kind": {"contacts:CONTACT": [1, 4], "contacts:NOTICES": [1, 0],
                "contacts:RATE": [0, 1], "contacts:TWOFACTOR": [1, 0], "outbox": [0, 8],
                "sessions": [1, 2]}},
        "sign out": {"count": 67, "http": 1, "ddb_calls": 1, "ddb_calls_send_email": 0, "rru": 0,
            "wru": 2, "index_wru": 1, "touches": 0, "outbox_items": 0, "events": 0, "emails": 0,
            "kms": 0, "log_lines": 1, "log_bytes": 285,
            "by_kind": {"sessions": [0, 2]}},
    },
    "stored_bytes_per_user": 4575,
    "session_item_bytes": 287,
    # Each with the dimension Stack (one value per stack: one metric each).
    "custom_metrics": [["Portal", "EmailsFailed", ["Stack"]], ["Portal", "EmailsRetried", ["Stack"]],
        ["Portal", "EmailsSent", ["Stack"]], ["Portal", "EventsPublished", ["Stack"]],
        ["Portal", "OldestMessageAgeSeconds", ["Stack"]]],
}

# --- MEASURED elsewhere ----------------------------------------------------------------------------
# CPU time of one argon2id verification or hash (m=19 MiB, t=2, p=1), release build with argon2
# and blake2 at opt-level 3, one core of the 2-core x86_64 development machine (2026-11-29,
# `cargo bench -p portal --bench hash`). Graviton (arm64) cores are assumed as fast: measure a
# deployed function's REPORT lines to refine it.
HASH_CPU_MS = 32.0
# Argon2 hashes per operation: a sign-in verifies (an unknown login verifies a decoy), a
# registration or redemption hashes, a password change verifies and hashes.
HASHES = {"sign in": 1, "sign in, wrong password": 1, "sign in, TOTP": 1,
          "sign in, email code: ask": 1, "register": 1, "reset password": 1,
          "change password": 2, "redeem invitation": 1}
FUNCTION_OF = {
    "public page": "SignInFunction", "sign in": "SignInFunction",
    "sign in, wrong password": "SignInFunction", "sign in, TOTP": "SignInFunction",
    "sign in, email code: ask": "SignInFunction", "sign in, email code: verify": "SignInFunction",
    "profile view": "ProfileFunction", "register": "RegisterFunction",
    "create invitation": "CreateInvitationFunction", "redeem invitation": "RedeemInvitationFunction",
    "forgot password": "SignInFunction", "reset password": "SignInFunction",
    "change password": "ProfileFunction", "sign out": "SignInFunction",
}
SEND_EMAIL_FUNCTION = "SendEmailFunction"

# --- ASSUMED ----------------------------------------------------------------------------------
DDB_CALL_MS = 8.0        # one DynamoDB call from Lambda in the same region (p50 is single-digit ms)
AWS_CALL_MS = 20.0       # one call to SES, EventBridge or KMS
OVERHEAD_MS = 2.0        # the handler's own work and the runtime's per invocation (measured: well
                         # under 1 ms)
# Operations per MAU per month: a customer portal visited a few times a month. Its keys are the
# operations make load runs and measures. 3.8 sign-ins: 3.5 with a password alone, 0.2 with TOTP
# (KMS decrypts the secret), 0.1 with a code by email (two operations: ask, then verify).
PROFILE = {
    "public page": 6.0,                   # sign-in, register, redeem and reset pages
    "sign in": 3.5,
    "sign in, wrong password": 0.4,
    "sign in, TOTP": 0.2,
    "sign in, email code: ask": 0.1,
    "sign in, email code: verify": 0.1,
    "profile view": 8.0,                  # signed-in views (GET /profile)
    "register": 0.05,                     # 5% of MAU register in the month
    "create invitation": 0.05,            # and 5% are invited...
    "redeem invitation": 0.05,            # ...and redeem
    "forgot password": 0.05,
    "reset password": 0.04,
    "change password": 0.02,
    "sign out": 2.0,
}
# The session's idle timer (shared/src/domain/session.rs): a request of a session last seen a
# minute or more ago refreshes it, one UpdateItem of the session. A visit begins with a session
# (a sign-in, a registration, a redemption), whose creation sets the timer; its signed-in requests
# (profile views, password changes) are spread over SIGNED_IN_MINUTES_PER_VISIT, so a visit makes
# one refresh per minute after its first, and no more than it has requests.
SIGNED_IN_MINUTES_PER_VISIT = 3
VISITS = ("sign in", "sign in, TOTP", "sign in, email code: verify", "register",
          "redeem invitation")
SIGNED_IN_REQUESTS = ("profile view", "change password")
# What Lambda itself logs per invocation (text format: the template sets no LogFormat): START,
# END and REPORT lines like these.
PLATFORM_LOG_LINES = (
    "START RequestId: 6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b Version: $LATEST",
    "END RequestId: 6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b",
    "REPORT RequestId: 6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b\tDuration: 41.27 ms\t"
    "Billed Duration: 42 ms\tMemory Size: 1769 MB\tMax Memory Used: 38 MB\t",
)
# The API's access log line per request: the template's AccessLogSettings Format with values of
# a typical length.
ACCESS_LOG_VALUES = {
    "requestId": "Mz1aKhTyoAMEbJg=", "requestTime": "07/Dec/2026:10:15:30 +0000",
    "identity.sourceIp": "203.0.113.45", "httpMethod": "POST", "routeKey": "POST /signin",
    "path": "/signin", "status": "200", "protocol": "HTTP/1.1", "responseLength": "412",
    "responseLatency": "48", "integrationLatency": "46", "integrationErrorMessage": "-",
}


def template() -> dict:
    import local_aws

    return local_aws.load_template()


def memory_sizes(tpl: dict) -> dict[str, int]:
    """MemorySize of each function in the template (its own, else the Globals')."""
    default = int(tpl["Globals"]["Function"]["MemorySize"])
    return {lid: int(res["Properties"].get("MemorySize", default))
            for lid, res in tpl["Resources"].items()
            if res["Type"] == "AWS::Serverless::Function"}


def alarm_metrics(tpl: dict) -> dict[str, int]:
    """Billed metrics of each CloudWatch alarm of the template: 1 for an alarm on a metric, the
    metrics (MetricStat) of its expression for an alarm on metric math."""
    found = {}
    for lid, res in tpl["Resources"].items():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = res.get("Properties") or {}
        metrics = props.get("Metrics")
        found[lid] = sum(1 for m in metrics if "MetricStat" in m) if metrics else 1
    return found


def template_custom_metrics(tpl: dict) -> set[tuple[str, str]]:
    """(namespace, metric) the template's alarms name outside the AWS/ namespaces."""
    found = set()
    for res in tpl["Resources"].values():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = res.get("Properties") or {}
        stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics") or [] if "MetricStat" in m]
        if "MetricName" in props:
            stats.append(props)
        found |= {(m["Namespace"], m["MetricName"]) for m in stats
                  if not str(m.get("Namespace", "")).startswith("AWS/")}
    return found


def access_log_bytes(tpl: dict) -> int:
    """Bytes of one access log line of the HTTP API, the template's Format filled in."""
    api = next(res for res in tpl["Resources"].values() if res["Type"] == "AWS::Serverless::HttpApi")
    line = api["Properties"]["AccessLogSettings"]["Format"]
    line = re.sub(r"\$context\.([\w.]+)", lambda m: ACCESS_LOG_VALUES[m.group(1)], line)
    return len(line.replace("\n", "").encode())


def hash_ms(memory_mb: int) -> float:
    return HASH_CPU_MS * 1769 / min(memory_mb, 1769)


def duration_ms(op: str, memory_mb: int, measured: dict) -> float:
    """The op's Lambda time on its HTTP function, all its requests together: its hashes, its
    DynamoDB calls and other AWS calls (KMS) one after another, and each request's overhead."""
    m = measured["operations"][op]
    return (HASHES.get(op, 0) * hash_ms(memory_mb) + m["ddb_calls"] * DDB_CALL_MS
            + m["kms"] * AWS_CALL_MS + m["http"] * OVERHEAD_MS)


def send_email_ms(op: str, measured: dict) -> float:
    """send-email's time for the op's outbox items, one invocation each: its DynamoDB calls, one
    SES or EventBridge call per email or event, each invocation's overhead."""
    m = measured["operations"][op]
    return (m["ddb_calls_send_email"] * DDB_CALL_MS + (m["emails"] + m["events"]) * AWS_CALL_MS
            + m["outbox_items"] * OVERHEAD_MS)


def billed_gb_s(ms: float, invocations: float, memory_mb: int) -> float:
    """GB-s of `invocations` that take `ms` in all, each billed per started millisecond."""
    if invocations <= 0:
        return 0.0
    return invocations * math.ceil(ms / invocations) / 1000 * memory_mb / 1024


def month_units(measured: dict) -> dict[str, tuple[float, float]]:
    """(read units, write units) a month for MAU users, per operation of PROFILE, from the
    measured units per operation (session touches not included)."""
    ops = measured["operations"]
    return {op: (per_mau * MAU * ops[op]["rru"], per_mau * MAU * ops[op]["wru"])
            for op, per_mau in PROFILE.items()}


def session_touches_per_mau() -> float:
    visits = sum(PROFILE[op] for op in VISITS)
    requests = sum(PROFILE[op] for op in SIGNED_IN_REQUESTS)
    return visits * min(SIGNED_IN_MINUTES_PER_VISIT - 1, requests / visits)


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def cognito_lite(mau: int) -> float:
    cost, below, left = 0.0, COGNITO_FREE_MAU, max(mau - COGNITO_FREE_MAU, 0)
    for ceiling, price in COGNITO_LITE_TIERS:
        band = left if ceiling is None else min(left, ceiling - below)
        cost, left, below = cost + band * price, left - band, below + band
        if left <= 0:
            break
    return cost


def per_month(measured: dict, key: str, ops=None) -> float:
    """A measured per-operation figure summed over a month of the profile."""
    return sum(PROFILE[op] * MAU * measured["operations"][op][key] for op in ops or PROFILE)


def by_kind_month(measured: dict, match) -> tuple[float, float]:
    """(read, write) units a month of the items whose kind `match` accepts."""
    rru = wru = 0.0
    for op, per_mau in PROFILE.items():
        for kind, (r, w) in measured["operations"][op]["by_kind"].items():
            if match(kind):
                rru, wru = rru + per_mau * MAU * r, wru + per_mau * MAU * w
    return rru, wru


def lines_and_facts(measured: dict, tpl: dict) -> tuple[dict, dict]:
    """The month's cost lines (name: USD) and the figures behind them."""
    memory = memory_sizes(tpl)
    ops = measured["operations"]
    gb_s = http = send_email_invocations = 0.0
    for op, per_mau in PROFILE.items():
        n, mb = per_mau * MAU, memory[FUNCTION_OF[op]]
        http += n * ops[op]["http"]
        gb_s += billed_gb_s(n * duration_ms(op, mb, measured), n * ops[op]["http"], mb)
        items = n * ops[op]["outbox_items"]
        send_email_invocations += items
        gb_s += billed_gb_s(n * send_email_ms(op, measured), items, memory[SEND_EMAIL_FUNCTION])
    invocations = http + send_email_invocations
    units = month_units(measured)
    rru, wru = sum(r for r, _ in units.values()), sum(w for _, w in units.values())
    index_wru = per_month(measured, "index_wru")
    outbox_rru, outbox_wru = by_kind_month(measured, lambda k: k == "outbox")
    two_factor_rru, _ = by_kind_month(measured, lambda k: k == "contacts:TWOFACTOR")
    touches = session_touches_per_mau() * MAU
    touch_wcu = write_units(measured["session_item_bytes"])
    events, emails, kms = (per_month(measured, k) for k in ("events", "emails", "kms"))
    outbox_items = per_month(measured, "outbox_items")
    storage_gb = measured["stored_bytes_per_user"] * MAU / 1e9
    # Logs: the functions' own lines (measured), Lambda's three lines per invocation and the API's
    # access line per request (assumed), each event 26 bytes more.
    function_log = per_month(measured, "log_bytes") + per_month(
        measured, "log_lines") * LOG_EVENT_OVERHEAD_BYTES
    platform_log = invocations * sum(len(line) + LOG_EVENT_OVERHEAD_BYTES
                                     for line in PLATFORM_LOG_LINES)
    access_log = http * (access_log_bytes(tpl) + LOG_EVENT_OVERHEAD_BYTES)
    log_bytes = function_log + platform_log + access_log
    alarms = alarm_metrics(tpl)
    custom = {(ns, name) for ns, name, _ in measured["custom_metrics"]} | template_custom_metrics(tpl)
    lines = {
        "Lambda compute (arm64)": gb_s * LAMBDA_ARM_GB_SECOND,
        "Lambda requests": invocations * LAMBDA_REQUEST,
        "API Gateway HTTP API": http * HTTP_API_REQUEST,
        "DynamoDB reads": rru * DDB_READ_UNIT,
        "DynamoDB writes": wru * DDB_WRITE_UNIT,
        "DynamoDB session idle timer": touches * touch_wcu * DDB_WRITE_UNIT,
        "DynamoDB Streams (outbox)": DDB_STREAM_READS_BY_LAMBDA,
        "DynamoDB storage and PITR": storage_gb * (DDB_STORAGE_GB_MONTH + DDB_PITR_GB_MONTH),
        "SES emails": emails * SES_EMAIL,
        "EventBridge events": events * EVENTBRIDGE_EVENT,
        "KMS key": KMS_KEY_MONTH,
        "KMS requests": kms * KMS_REQUEST,
        "CloudWatch logs": log_bytes / 1e9 * LOGS_GB,
        "CloudWatch alarms": sum(alarms.values()) * ALARM_METRIC_MONTH,
        "CloudWatch custom metrics": len(custom) * CUSTOM_METRIC_MONTH,
    }
    facts = dict(memory=memory, gb_s=gb_s, http=http, invocations=invocations,
                 send_email_invocations=send_email_invocations, rru=rru, wru=wru,
                 index_wru=index_wru, outbox_rru=outbox_rru, outbox_wru=outbox_wru,
                 outbox_items=outbox_items, two_factor_rru=two_factor_rru, touches=touches,
                 touch_wcu=touch_wcu, events=events, emails=emails, kms=kms,
                 storage_gb=storage_gb, log_bytes=log_bytes, function_log=function_log,
                 platform_log=platform_log, access_log=access_log, alarms=alarms, custom=custom)
    return lines, facts


def report(measured: dict, source: str) -> str:
    tpl = template()
    lines, f = lines_and_facts(measured, tpl)
    at = measured["measured_at"]
    out = []
    w = out.append
    w(f"Per {MAU:,} monthly active users (MAU), us-east-1 list prices (read 2026-11-29; KMS, "
      f"EventBridge, alarms, custom metrics written down {PRICES_WRITTEN})")
    w(f"Units per operation measured by make load on {at['date']} at commit {at['commit']} "
      f"({source})\n")
    w(f"{'operation':28} {'per MAU':>7} {'MB':>5} {'ms':>6} {'HTTP':>4} {'calls':>5} "
      f"{'RRU':>5} {'WRU':>6} {'(index)':>7} {'log B':>6}")
    def g(x):
        return f"{round(x, 1):g}"
    for op, per_mau in PROFILE.items():
        m, mb = measured["operations"][op], f["memory"][FUNCTION_OF[op]]
        w(f"{op:28} {per_mau:7.2f} {mb:5d} {duration_ms(op, mb, measured):6.1f} {g(m['http']):>4} "
          f"{g(m['ddb_calls'] + m['ddb_calls_send_email']):>5} {g(m['rru']):>5} {g(m['wru']):>6} "
          f"{g(m['index_wru']):>7} {m['log_bytes']:6.0f}")
    w("(ms: the HTTP function's time for all the operation's requests; calls: DynamoDB calls, "
      "send-email's afterwards included;")
    w(" RRU, WRU: units as billed per operation, index writes included, session timer apart; "
      "log B: the functions' own log bytes)")
    total = sum(lines.values())
    alarms = f["alarms"]
    notes = {
        "Lambda compute (arm64)": f"{f['gb_s']:,.0f} GB-s",
        "Lambda requests": f"{f['invocations'] / 1e6:.2f} million, "
                           f"{f['send_email_invocations']:,.0f} of them send-email's",
        "API Gateway HTTP API": f"{f['http'] / 1e6:.2f} million requests",
        "DynamoDB reads": f"{f['rru'] / 1e6:.2f} million RRU; the two-factor state's "
                          f"{f['two_factor_rru'] / 1e6:.2f} M (a read per sign-in)",
        "DynamoDB writes": f"{f['wru'] / 1e6:.2f} million WRU; index writes "
                           f"{f['index_wru'] / 1e6:.2f} M, outbox {f['outbox_wru'] / 1e6:.2f} M "
                           f"({f['outbox_items']:,.0f} items: {f['events']:,.0f} events, "
                           f"{f['emails']:,.0f} emails)",
        "DynamoDB session idle timer": f"{f['touches'] / 1e6:.2f} million UpdateItems of "
                                       f"{f['touch_wcu']} WRU (modelled, "
                                       f"{SIGNED_IN_MINUTES_PER_VISIT}-minute visits)",
        "DynamoDB Streams (outbox)": "read by the Lambda trigger: free",
        "DynamoDB storage and PITR": f"{f['storage_gb']:.2f} GB "
                                     f"({measured['stored_bytes_per_user']:,.0f} B a user)",
        "SES emails": f"{f['emails']:,.0f} emails",
        "EventBridge events": f"{f['events']:,.0f} events",
        "KMS key": f"1 key; ${KMS_KEY_MONTH_AFTER_ROTATIONS:.2f} from the third year (rotation)",
        "KMS requests": f"{f['kms']:,.0f} requests (TOTP sign-ins)",
        "CloudWatch logs": f"{f['log_bytes'] / 1e9:.2f} GB: functions "
                           f"{f['function_log'] / 1e9:.2f} (measured), Lambda "
                           f"{f['platform_log'] / 1e9:.2f}, API {f['access_log'] / 1e9:.2f}",
        "CloudWatch alarms": f"{len(alarms)} alarms, {sum(alarms.values())} alarm metrics",
        "CloudWatch custom metrics": f"{len(f['custom'])}: "
                                    + ", ".join(sorted(name for _, name in f["custom"])),
    }
    w("")
    for name, usd in lines.items():
        w(f"{name:28} ${usd:8.2f}   {notes[name]}")
    w(f"{'portal total':28} ${total:8.2f}   (${total / MAU * 1000:.3f} per 1,000 MAU)")
    w("")
    # Why each hashing function gets 1,769 MB: below it the hash's CPU-bound time shrinks as fast
    # as the price per ms grows (the hash costs the same), so only the waits cost more.
    w("sign-in at other memory sizes (same profile): hash ms, sign-in ms, sign-in's monthly compute")
    sign_in_ops = [op for op in PROFILE if FUNCTION_OF[op] == "SignInFunction"]
    for mb in (512, 1024, 1536, 1769, 2048):
        usd = sum(billed_gb_s(PROFILE[op] * MAU * duration_ms(op, mb, measured),
                              PROFILE[op] * MAU * measured["operations"][op]["http"], mb)
                  for op in sign_in_ops) * LAMBDA_ARM_GB_SECOND
        w(f"  {mb:5d} MB: hash {hash_ms(mb):6.1f} ms, sign in {duration_ms('sign in', mb, measured):6.1f}"
          f" ms, ${usd:6.2f}")
    w("")
    lite, essentials = cognito_lite(MAU), max(MAU - COGNITO_FREE_MAU, 0) * COGNITO_ESSENTIALS_MAU
    w(f"{'Amazon Cognito Lite':28} ${lite:8.2f}   (identity only: add the app's own hosting and email)")
    w(f"{'Amazon Cognito Essentials':28} ${essentials:8.2f}   ({essentials / total:.0f}x the portal)")
    return "\n".join(out)


def total_usd(measured: dict | None = None) -> float:
    return sum(lines_and_facts(measured or MEASURED, template())[0].values())


def measured_literal(measured: dict) -> str:
    """A make load units file as the MEASURED literal of this file (a few lines an operation)."""
    def value(v):
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)}: {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(int(v) if isinstance(v, float) and v.is_integer() else v)

    def fill(pieces: list[str], indent: int, opening: str, closing: str) -> list[str]:
        """opening, the pieces (never split) as many to a line of 100 as fit, closing."""
        lines, line = [], " " * indent + opening
        for i, piece in enumerate(pieces):
            piece += "," if i < len(pieces) - 1 else closing
            if len(line) + 1 + len(piece) > 100 and line.strip() not in ("", opening.strip()):
                lines.append(line.rstrip())
                line = " " * (indent + 4) + piece
            else:
                line += ("" if line.endswith(("{", "[", " ")) else " ") + piece
        return lines + [line] if pieces else [" " * indent + opening + closing]
    out = ["MEASURED = {"]
    out += fill([f"{json.dumps(k)}: {value(v)}" for k, v in measured["measured_at"].items()],
                4, '"measured_at": {', "},")
    out.append('    "operations": {')
    for op, m in measured["operations"].items():
        out += fill([f"{json.dumps(k)}: {value(v)}" for k, v in m.items() if k != "by_kind"],
                    8, f"{json.dumps(op)}: {{", ",")
        out += fill([f"{json.dumps(k)}: {value(v)}" for k, v in m["by_kind"].items()],
                    12, '"by_kind": {', "}},")
    out.append("    },")
    for k, v in measured.items():
        if k in ("measured_at", "operations"):
            continue
        if isinstance(v, list):
            out += fill([value(x) for x in v], 4, f"{json.dumps(k)}: [", "],")
        else:
            out.append(f"    {json.dumps(k)}: {value(v)},")
    out.append("}")
    return "\n".join(out)


def load_units(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cost.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", help="price the units of this make load run "
                                        "(.local/load-units.json) instead of MEASURED")
    parser.add_argument("--print-measured", metavar="FILE",
                        help="print a make load run's units as the MEASURED literal, and stop")
    args = parser.parse_args(argv)
    if args.print_measured:
        print(measured_literal(load_units(args.print_measured)))
        return 0
    if args.units:
        print(report(load_units(args.units), args.units))
    else:
        print(report(MEASURED, "MEASURED in scripts/cost.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
