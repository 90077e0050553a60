#!/usr/bin/env python3
"""make cost: the portal's monthly AWS cost per 100,000 monthly active users (MAU), on the usage
profile below, against Amazon Cognito user pools (Lite and Essentials) for the same users.

Inputs, each stated where it is defined:
- MEASURED: DynamoDB calls per operation (`make bench`, counted by an SDK interceptor against
  moto; README "Benchmarks"), split into reads, writes and transaction items from the adapters'
  code; the CPU time of one argon2id hash (`cargo bench -p portal --bench hash`, README "Latency
  and cost"); each function's memory size (infra/template.yaml).
- ASSUMED: the usage profile per MAU, DynamoDB latency per call, bytes of log per request.
- PRICES: us-east-1 list prices with their source and the date they were read.
Lambda gives a function M/1769 of a vCPU below 1,769 MB, so a CPU-bound hash of C ms of CPU
takes C * 1769 / M ms there; the rest of a request waits on DynamoDB."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MAU = 100_000

# --- PRICES (USD, us-east-1), read 2026-11-29 from the AWS pricing pages named ----------------
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
# aws.amazon.com/cloudwatch/pricing: logs ingested (standard class); alarms (standard, per alarm).
LOGS_GB = 0.50
ALARM_MONTH = 0.10
# aws.amazon.com/cognito/pricing: user pools, Lite and Essentials feature plans (since
# 2024-11-22): 10,000 MAU free per account for direct sign-in; then Lite $0.0055/MAU up to
# 100,000 ($0.0046 to 1 million), Essentials $0.015/MAU. (Accounts with user pools from before
# that date may keep a 50,000 MAU free tier.)
COGNITO_FREE_MAU = 10_000
COGNITO_LITE_TIERS = [(100_000, 0.0055), (1_000_000, 0.0046), (10_000_000, 0.00325), (None, 0.0025)]
COGNITO_ESSENTIALS_MAU = 0.015

# --- MEASURED ---------------------------------------------------------------------------------
# CPU time of one argon2id verification or hash (m=19 MiB, t=2, p=1), release build with argon2
# and blake2 at opt-level 3, one core of the 2-core x86_64 development machine (2026-11-29,
# `cargo bench -p portal --bench hash`). Graviton (arm64) cores are assumed as fast: measure a
# deployed function's REPORT lines to refine it.
HASH_CPU_MS = 32.0
# (reads, writes, transaction items) per operation: the DynamoDB calls `make bench` counts,
# split by kind from the adapters. Reads are strongly consistent GetItem/Query of items under
# 4 KB (1 read unit); a write of an item under 1 KB is 1 write unit; a transaction item is 2.
DDB = {
    "GET page (no DynamoDB)": (0, 0, 0),
    "GET /profile (signed in)": (2, 0, 0),
    # Sign-in: guard, contact; attempts on the address and the account, given back / reset on
    # success; the session, the device cookie's item, the old session ended.
    "sign in": (2, 6, 0),                  # 8 calls
    "sign in, wrong password": (3, 2, 0),  # 5 calls: guard, contact, lock check; two attempts
    "sign out": (0, 1, 0),
    "register": (0, 3, 4),                 # 4 calls: two allowances; contact+guard+token+email; session
    "forgot password": (0, 2, 1),          # 3 calls: two allowances; one outbox message
    "reset password": (2, 3, 3),           # token, contact; three allowances; token+password+notice
    "change password": (2, 6, 2),          # session, contact; attempt, reset, three allowances,
                                           # password+notice, new session
    "create invitation": (3, 0, 5),        # 5 calls with a new contact
    "redeem (new credentials)": (3, 3, 4),  # 7 calls
    "send one email": (1, 3, 0),           # 4 calls: claim, is the code current, sent, delivery
}
# Argon2 hashes per operation: a sign-in verifies (an unknown login verifies a decoy), a
# registration or redemption hashes, a password change verifies and hashes.
HASHES = {"sign in": 1, "sign in, wrong password": 1, "register": 1, "reset password": 1,
          "change password": 2, "redeem (new credentials)": 1}
FUNCTION_OF = {
    "GET page (no DynamoDB)": "SignInFunction", "GET /profile (signed in)": "ProfileFunction",
    "sign in": "SignInFunction", "sign in, wrong password": "SignInFunction",
    "sign out": "SignInFunction", "register": "RegisterFunction",
    "forgot password": "SignInFunction", "reset password": "SignInFunction",
    "change password": "ProfileFunction", "create invitation": "CreateInvitationFunction",
    "redeem (new credentials)": "RedeemInvitationFunction", "send one email": "SendEmailFunction",
}

# --- ASSUMED ----------------------------------------------------------------------------------
DDB_CALL_MS = 8.0        # one DynamoDB call from Lambda in the same region (p50 is single-digit ms)
OVERHEAD_MS = 2.0        # the handler's own work and the runtime's (measured: well under 1 ms)
LOG_BYTES_PER_REQUEST = 1500  # access log line, a function's START/END/REPORT and audit lines
BYTES_PER_CONTACT = 2048      # contact, guard items, invitations and sessions, stored
ALARMS = 9
# Operations per MAU per month: a customer portal visited a few times a month.
PROFILE = {
    "GET page (no DynamoDB)": 6.0,        # sign-in, register, redeem and reset pages
    "sign in": 3.8,
    "sign in, wrong password": 0.4,
    "GET /profile (signed in)": 8.0,
    "sign out": 2.0,
    "forgot password": 0.05,
    "reset password": 0.04,
    "change password": 0.02,
    "register": 0.05,                     # 5% of MAU register in the month
    "create invitation": 0.05,            # and 5% are invited...
    "redeem (new credentials)": 0.05,     # ...and redeem
    "send one email": 0.05 + 0.05 + 0.05 + 0.02,  # confirmations, invitations, resets, notices
}
EMAILS_PER_MAU = PROFILE["send one email"]


def memory_sizes() -> dict[str, int]:
    """MemorySize of each function in the template (its own, else the Globals')."""
    import local_aws

    template = local_aws.load_template()
    default = int(template["Globals"]["Function"]["MemorySize"])
    return {lid: int(res["Properties"].get("MemorySize", default))
            for lid, res in template["Resources"].items()
            if res["Type"] == "AWS::Serverless::Function"}


def hash_ms(memory_mb: int) -> float:
    return HASH_CPU_MS * 1769 / min(memory_mb, 1769)


def duration_ms(op: str, memory_mb: int) -> float:
    reads, writes, items = DDB[op]
    calls = reads + writes + (1 if items else 0)
    return HASHES.get(op, 0) * hash_ms(memory_mb) + calls * DDB_CALL_MS + OVERHEAD_MS


def dynamodb_units_per_month() -> dict[str, tuple[float, float]]:
    """(read units, write units) a month for MAU users, per operation of PROFILE, as this model
    counts them (DDB: a transaction item is 2 write units; no index writes). scripts/load.py
    prints it beside the units it measures."""
    return {op: (per_mau * MAU * DDB[op][0], per_mau * MAU * (DDB[op][1] + 2 * DDB[op][2]))
            for op, per_mau in PROFILE.items()}


def cognito_lite(mau: int) -> float:
    cost, below, left = 0.0, COGNITO_FREE_MAU, max(mau - COGNITO_FREE_MAU, 0)
    for ceiling, price in COGNITO_LITE_TIERS:
        band = left if ceiling is None else min(left, ceiling - below)
        cost, left, below = cost + band * price, left - band, below + band
        if left <= 0:
            break
    return cost


def main() -> int:
    memory = memory_sizes()
    print(f"Per {MAU:,} monthly active users (MAU), us-east-1 list prices read 2026-11-29\n")
    print(f"{'operation':28} {'per MAU':>8} {'MB':>5} {'ms':>6} {'RRU':>4} {'WRU':>4}")
    lambda_gb_s = invocations = http_requests = 0.0
    units = dynamodb_units_per_month()
    rru, wru = sum(r for r, _ in units.values()), sum(w for _, w in units.values())
    for op, per_mau in PROFILE.items():
        mb = memory[FUNCTION_OF[op]]
        ms = duration_ms(op, mb)
        reads, writes, items = DDB[op]
        n = per_mau * MAU
        invocations += n
        if op != "send one email":
            http_requests += n
        lambda_gb_s += n * (mb / 1024) * (round(ms + 0.5) / 1000)  # billed per started ms
        print(f"{op:28} {per_mau:8.2f} {mb:5d} {ms:6.1f} {reads:4d} {writes + 2 * items:4d}")
    storage_gb = MAU * BYTES_PER_CONTACT / 1e9
    lines = {
        "Lambda compute (arm64)": lambda_gb_s * LAMBDA_ARM_GB_SECOND,
        "Lambda requests": invocations * LAMBDA_REQUEST,
        "API Gateway HTTP API": http_requests * HTTP_API_REQUEST,
        "DynamoDB reads": rru * DDB_READ_UNIT,
        "DynamoDB writes": wru * DDB_WRITE_UNIT,
        "DynamoDB storage and PITR": storage_gb * (DDB_STORAGE_GB_MONTH + DDB_PITR_GB_MONTH),
        "SES emails": EMAILS_PER_MAU * MAU * SES_EMAIL,
        "CloudWatch logs and alarms": invocations * LOG_BYTES_PER_REQUEST / 1e9 * LOGS_GB
        + ALARMS * ALARM_MONTH,
    }
    total = sum(lines.values())
    print()
    for name, usd in lines.items():
        print(f"{name:28} ${usd:10.2f}")
    print(f"{'portal total':28} ${total:10.2f}   (${total / MAU * 1000:.3f} per 1,000 MAU)")
    print(f"\nHTTP requests {http_requests:,.0f}, Lambda invocations {invocations:,.0f}, "
          f"{lambda_gb_s:,.0f} GB-s; hash {hash_ms(memory['SignInFunction']):.0f} ms at "
          f"{memory['SignInFunction']} MB (sign-in)\n")
    # Why each hashing function gets 1,769 MB: below it the hash's CPU-bound time shrinks as fast
    # as the price per ms grows (the hash costs the same), so only the DynamoDB wait costs more.
    print("sign-in at other memory sizes (same profile): hash ms, sign-in ms, sign-in's monthly compute")
    for mb in (512, 1024, 1536, 1769, 2048):
        ops = [op for op in PROFILE if FUNCTION_OF[op] == "SignInFunction"]
        usd = sum(PROFILE[op] * MAU * (mb / 1024) * (round(duration_ms(op, mb) + 0.5) / 1000)
                  for op in ops) * LAMBDA_ARM_GB_SECOND
        print(f"  {mb:5d} MB: hash {hash_ms(mb):6.1f} ms, sign in {duration_ms('sign in', mb):6.1f} ms, "
              f"${usd:6.2f}")
    print()
    lite, essentials = cognito_lite(MAU), max(MAU - COGNITO_FREE_MAU, 0) * COGNITO_ESSENTIALS_MAU
    print(f"{'Amazon Cognito Lite':28} ${lite:10.2f}   (identity only: add the app's own hosting and email)")
    print(f"{'Amazon Cognito Essentials':28} ${essentials:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
