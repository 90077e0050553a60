#!/usr/bin/env python3
"""The fault matrix of shared/tests/fault_matrix.rs as a Markdown table (for the README).

Usage: scripts/fault_matrix.py [DIR]  (DIR: the test's output, by default
$CARGO_TARGET_DIR/tmp/fault-matrix or target/tmp/fault-matrix). Rows: path and AWS call position;
columns: fault kinds; a cell: the outcome with the fault on one attempt / on every attempt
("ok": the fault-free answer, the SDK's retry absorbed it; "503": a clean 503 `internal`; for
send-email "retry": the record was reported for a retry, which then sent it)."""

import collections
import os
import sys

ORDER = ["register", "failed sign-in (counting)", "create invitation", "resend invitation",
         "revoke invitation", "redeem: new credentials", "redeem: existing account",
         "profile update", "password change", "password reset", "send-email"]
KINDS = ["ThrottlingException", "ProvisionedThroughputExceeded", "TooManyRequests",
         "MessageRejected", "500", "timeout", "connection reset", "cancelled: ThrottlingError",
         "answer lost"]


def main() -> int:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "target"))
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "tmp", "fault-matrix")
    cells = collections.defaultdict(dict)  # (path, position) -> kind -> {attempts: outcome}
    totals, emails, cases = collections.Counter(), 0, 0
    for name in sorted(os.listdir(folder)):
        for line in open(os.path.join(folder, name)):
            if line.startswith("#") or not line.strip():
                continue
            path, position, kind, attempts, answer, _messages, sent = line.rstrip("\n").split("\t")
            cells[(path, position)].setdefault(kind, {})[attempts] = answer
            totals[answer] += 1
            emails += int(sent)
            cases += 1
    kinds = [k for k in KINDS if any(k in row for row in cells.values())]
    print("| path | AWS call | " + " | ".join(kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for (path, position) in sorted(cells, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99)):
        row = cells[(path, position)]
        shown = []
        for kind in kinds:
            outcome = row.get(kind, {})
            shown.append(" / ".join(outcome.get(a, "–") for a in ("one attempt", "every attempt"))
                         if outcome else "")
        print(f"| {path} | {position} | " + " | ".join(shown) + " |")
    summary = ", ".join(f"{n} {answer}" for answer, n in sorted(totals.items()))
    print(f"\n{cases} cases ({summary}); {emails} emails sent after the faults cleared, "
          f"each exactly once per message sent.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
