#!/usr/bin/env python3
"""make load: a simulated day of the portal on the local stack, measured.

A day's traffic for 100,000 monthly active users (MAU) at 1/100 scale: 1,000 users, a day being
1/30 of their month in the usage profile of scripts/cost.py (PROFILE, per MAU per month: 3.5
sign-ins with a password alone, 0.2 with TOTP, 0.1 with a code by email, 0.4 wrong passwords, 8
signed-in page views, 6 public page views, 2 sign-outs; 5% register, 5% are invited and redeem, 5%
ask for a reset link and 4% use it, 2% change their password).

1. Starts its own local stack (scripts/stack.py's start_stack: moto, the template's tables,
   `cargo lambda watch` with prebuilt functions, the outbox stream relay) on free loopback ports,
   every AWS call of a function passing through scripts/aws_recorder.py's proxy, here also
   watched for the request and answer bodies.
2. Seeds the users (not measured): each registers through HTTP (`POST /register`, the one honest
   path that needs no extra code: its argon2 hash, guard items, confirmation email and event are
   the real ones); a few set up TOTP or emailed sign-in codes through `/profile/two-factor`.
3. Runs the day in phases, one operation kind at a time, `--concurrency` at once; after each
   phase it waits until the outbox stream is delivered (stack.settle), so that every AWS call a
   phase caused, send-email's included, is attributed to it, then reads the four tables (a Scan
   each, not recorded) to size the items the phase wrote, and counts the functions' log lines the
   phase wrote to the stack's log.
4. Reports per kind: count, p50/p95 latency, errors, HTTP requests, DynamoDB calls (on the request
   path and in send-email afterwards), capacity units (index writes apart, and by the kind of item
   read or written), outbox items, events, emails and KMS requests, and the bytes of the
   functions' log lines; what the tables store per user; the custom metrics in the logs; the
   units scaled to a month of 100,000 MAU at the profile's rates, priced on demand (scripts/
   cost.py's prices) beside the units make cost prices (cost.MEASURED); and checks that nothing
   was lost: every outbox item settled (emails sent through SES, events on the bus's tap queue),
   every expected event published exactly once. A clean run writes its per-operation figures to
   .local/load-units.json (--units-json), which `scripts/cost.py --units` prices and
   `--print-measured` turns into cost.MEASURED.

Capacity units: moto answers ReturnConsumedCapacity with a constant (1 per call, 0.5 per GetItem,
whatever the item's size) and the functions do not ask for it, so units are computed from each
recorded call's request and answer as DynamoDB bills them (the rules are above Tables, below; the
counter is held against hand-computed cases by tests/test_cost.py). Each item is followed through
the phase's calls from the tables as read before the phase: a put's item, an update applied to the
item (apply_update), a delete; item sizes follow DynamoDB's rules (names and values, numbers by
significant digits). A session's idle-timer refresh is counted apart (make cost models it).

Exit status 0 only if every operation answered as expected, nothing was lost and the run ended
within --max-seconds."""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import datetime
import http.cookiejar
import json
import math
import os
import platform
import random
import re
import sys
import threading
import time
from collections import Counter
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # tests/support.py: the suite's HTTP helpers

import cost  # noqa: E402  (scripts/cost.py: the usage profile and the prices)
import local_aws  # noqa: E402
from totp import totp  # noqa: E402  (scripts/totp.py)
from aws_recorder import actions_of_request  # noqa: E402
from support import (  # noqa: E402
    BROWSER_ACCEPT, Portal, describe, emailed_invitation_code, emailed_token, find_cookie,
    session_token, strong_password, with_session,
)

# --- the day, from the usage profile (scripts/cost.py PROFILE, per MAU per month) --------------
SCALE_DOWN = 100                      # 100,000 MAU at 1/100: 1,000 users
USERS = cost.MAU // SCALE_DOWN
DAYS_PER_MONTH = 30
# Each kind of operation run here: the operations of the profile (scripts/cost.py PROFILE, whose
# keys are these kinds), two-factor sign-ins included.
KINDS = list(cost.PROFILE)
WHAT = {  # what one operation of a kind is (the report's key)
    "public page": "GET /, /signin, /register, /redeem, /forgot-password (no session), in turn",
    "sign in": "POST /signin, right password, no second factor",
    "sign in, wrong password": "POST /signin, wrong password (401)",
    "sign in, TOTP": "POST /signin + POST /signin/second-factor with a TOTP code",
    "sign in, email code: ask": "POST /signin + POST /signin/second-factor/email (the code mailed)",
    "sign in, email code: verify": "POST /signin/second-factor with the emailed code",
    "profile view": "GET /profile (JSON) with a session of the sign-ins",
    "register": "POST /register (201, signed in; confirmation email)",
    "create invitation": "an administrator's POST /admin/invitations for a new contact (email)",
    "redeem invitation": "POST /redeem with the emailed code and a new password",
    "forgot password": "POST /forgot-password (send-email issues the link)",
    "reset password": "POST /reset-password with the emailed token (a notice email)",
    "change password": "POST /profile/password (a notice email)",
    "sign out": "POST /signout",
}
PUBLIC_PAGES = ["/", "/signin", "/register", "/redeem", "/forgot-password"]
SEND_EMAIL = "send-email"
# Settings of the load's stack: every request comes from 127.0.0.1, so the per-source-address
# allowances (emails, failed sign-ins) are lifted, as for the pytest suite's shared stack.
STACK_SETTINGS = {"PORTAL_EMAILS_PER_ADDRESS_PER_HOUR": "10000000",
                  "PORTAL_FAILURES_PER_ADDRESS_PER_HOUR": "10000000"}
# The SES sending rate moto reports (send-email paces to it): SES's production default, as the
# Rust tests' moto (moto's own 1 a second would make the seed's confirmations take 17 minutes).
SES_MAX_SEND_RATE = 14
SETTLE_SECONDS = 300  # the longest wait for the outbox stream after a phase


class LoadError(Exception):
    """An operation that did not answer as the contract says."""


def day_count(kind: str, scale: float, minimum: int) -> int:
    """Operations of `kind` in the run: the profile's day for USERS users times scale, rounded up,
    at least `minimum`."""
    return max(minimum, math.ceil(profile_day(kind) * scale - 1e-9))


def profile_day(kind: str) -> float:
    """The profile's operations of `kind` in one day of USERS users (not rounded)."""
    return cost.PROFILE[kind] * USERS / DAYS_PER_MONTH


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- DynamoDB item sizes and capacity units -------------------------------------------------------
# How DynamoDB bills on demand, as this counter applies it (developer guide: "Read/write capacity
# mode", "Item sizes", "Global secondary indexes: provisioned throughput considerations"):
# - a write: 1 WCU per started KB of the larger of the item before and after; a refused
#   conditional write: 1 WCU per started KB of the item it looked at (1 if there was none); a
#   transaction item, and a ConditionCheck, twice that;
# - a global secondary index: nothing when the item is in it neither before nor after (sparse: an
#   index key missing); 1 WCU per started KB of the index entry when the item enters or leaves it,
#   or when the value of an attribute the index holds changes; a delete and a put (the old entry's
#   units and the new one's) when the value of its key changes. The entry is what the index
#   projects: the table's keys and its own, with INCLUDE its NonKeyAttributes too, with ALL the
#   whole item. The index writes of a transaction item are counted once (ASSUMED: DynamoDB
#   documents the doubling for the items a transaction writes, not for their indexes);
# - a read: 1 RCU per started 4 KB strongly consistent, half of it eventually consistent (index
#   queries always are), twice in a transaction; a GetItem and each item of a BatchGetItem on the
#   item's size (a missing item 1 unit), a Query on the summed size of what it read (index entries
#   for an index; items a filter dropped count as read).

def number_size(text: str) -> int:
    """DynamoDB's size of a number: 1 byte per two significant digits, plus 1."""
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def binary_size(value) -> int:
    return len(value) if isinstance(value, (bytes, bytearray)) else len(base64.b64decode(value))


def value_size(value: dict) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return binary_size(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(number_size(n) for n in v)
    if kind == "BS":
        return sum(binary_size(b) for b in v)
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in v.items())
    raise ValueError(f"unknown AttributeValue type {kind!r}")


def item_size(item: dict | None) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


def write_units(size: int) -> int:
    """Write units of `size` bytes: 1 per started KB, at least 1."""
    return max(1, math.ceil(size / 1024))


def read_units(size: int) -> int:
    """Read units of `size` bytes, strongly consistent: 1 per started 4 KB, at least 1."""
    return max(1, math.ceil(size / 4096))


def read_capacity(size: int, consistent: bool, transactional: bool = False) -> float:
    """Read units billed for reading `size` bytes in one read (a GetItem's item, a Query page)."""
    return (2.0 if transactional else 1.0 if consistent else 0.5) * read_units(size)


# An update expression's clauses (not a placeholder that happens to be spelled :set or #delete).
UPDATE_CLAUSE = re.compile(r"(?<![:#\w])(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)


def split_top_level(text: str) -> list[str]:
    """`text` split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


class Unsupported(Exception):
    """An update operand that apply_update does not evaluate."""


def _path(text: str, names: dict) -> tuple[str, bool]:
    """A document path's top-level attribute (#placeholder resolved) and whether it goes below."""
    top, rest = re.match(r"\s*([^.\[\s]+)(.*)$", text, re.DOTALL).groups()
    return names.get(top, top), bool(rest.strip())


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _operand(text: str, before: dict, names: dict, values: dict) -> dict:
    """The value of a SET operand against the item before the update (as DynamoDB evaluates it)."""
    text, depth = text.strip(), 0
    for i, ch in enumerate(text):  # a + b, a - b (outside parentheses)
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch in "+-" and depth == 0 and i > 0:
            a = _operand(text[:i], before, names, values)
            b = _operand(text[i + 1:], before, names, values)
            if "N" not in a or "N" not in b:
                raise Unsupported(text)
            sign = 1 if ch == "+" else -1
            return {"N": _number(Decimal(a["N"]) + sign * Decimal(b["N"]))}
    call = re.fullmatch(r"(if_not_exists|list_append)\s*\((.*)\)", text, re.DOTALL)
    if call:
        args = split_top_level(call.group(2))
        if len(args) != 2:
            raise Unsupported(text)
        if call.group(1) == "if_not_exists":
            top, nested = _path(args[0], names)
            if nested:
                raise Unsupported(text)
            return before[top] if top in before else _operand(args[1], before, names, values)
        first, second = (_operand(a, before, names, values) for a in args)
        return {"L": first["L"] + second["L"]}
    if text.startswith(":"):
        return values[text]
    top, nested = _path(text, names)
    if nested or top not in before:
        raise Unsupported(text)
    return before[top]


SETS = ("SS", "NS", "BS")


def _add(current: dict | None, value: dict) -> dict:
    if current is None:
        return value
    if "N" in value:
        return {"N": _number(Decimal(current["N"]) + Decimal(value["N"]))}
    ((kind, members),) = value.items()
    if kind not in SETS:
        raise Unsupported(kind)
    return {kind: list(current[kind]) + [m for m in members if m not in current[kind]]}


def _delete(current: dict | None, value: dict) -> dict | None:
    ((kind, members),) = value.items()
    if current is None:
        return None
    rest = [m for m in current[kind] if m not in members]
    return {kind: rest} if rest else None


def apply_update(old: dict | None, expression: str, names: dict | None = None,
                 values: dict | None = None, fallback: dict | None = None) -> dict:
    """The item after an UpdateItem of `old` (None: no item yet) with `expression` and its
    ExpressionAttributeNames and -Values. SET (values, paths, a + b, a - b, if_not_exists,
    list_append), REMOVE, ADD and DELETE on top-level attributes are evaluated; a path below the
    top level (SET a.b = ...) or anything else takes its attribute as `fallback` holds it (the
    table read after the phase), or leaves it as it was if there is no fallback."""
    names, values, before = names or {}, values or {}, old or {}
    item = dict(before)
    pieces = UPDATE_CLAUSE.split(expression or "")
    for clause, body in zip(pieces[1::2], pieces[2::2]):
        clause = clause.upper()
        for action in split_top_level(body):
            action = action.strip()
            if not action:
                continue
            if clause == "SET":
                path, operand = action.split("=", 1)
            elif clause == "REMOVE":
                path, operand = action, ""
            else:  # ADD path value, DELETE path value
                path, operand = action.split(None, 1)
            top, nested = _path(path, names)
            try:
                if nested:
                    raise Unsupported(path)
                if clause == "SET":
                    item[top] = _operand(operand, before, names, values)
                elif clause == "REMOVE":
                    item.pop(top, None)
                elif clause == "ADD":
                    item[top] = _add(before.get(top), values[operand.strip()])
                else:
                    rest = _delete(before.get(top), values[operand.strip()])
                    if rest is None:
                        item.pop(top, None)
                    else:
                        item[top] = rest
            except (Unsupported, KeyError, ValueError, ArithmeticError, TypeError):
                if fallback is not None and top in fallback:
                    item[top] = fallback[top]
                elif fallback is not None:
                    item.pop(top, None)
    return item


class Tables:
    """Tables as infra/template.yaml defines them: key attributes and global secondary indexes
    (with their projections), by table name; and the unit counter's rules that need them."""

    def __init__(self, tables: dict[str, dict]):
        """tables: each table's resolved Properties (TableName, KeySchema,
        GlobalSecondaryIndexes), by logical id (ContactsTable: label "contacts")."""
        self.keys, self.indexes, self.label = {}, {}, {}
        for logical_id, props in tables.items():
            name = props["TableName"]
            self.label[name] = logical_id.removesuffix("Table").lower()
            self.keys[name] = [k["AttributeName"] for k in props["KeySchema"]]
            self.indexes[name] = [
                {"name": gsi["IndexName"], "keys": [k["AttributeName"] for k in gsi["KeySchema"]],
                 "type": gsi["Projection"]["ProjectionType"],
                 "include": gsi["Projection"].get("NonKeyAttributes", [])}
                for gsi in props.get("GlobalSecondaryIndexes") or []]

    @classmethod
    def of_stack(cls, stack) -> Tables:
        return cls(stack.resolver.tables())

    def key_of(self, table: str, item: dict) -> tuple:
        return (table, *(json.dumps(item.get(k), sort_keys=True) for k in self.keys[table]))

    def kind_of(self, table: str, item: dict) -> str:
        """What an item is, for the units' breakdown: its table's label and its key's prefix
        (contacts:CONTACT, contacts:TWOFACTOR, invitations:CODE), or the label alone (a session,
        an outbox item)."""
        pk = item.get(self.keys[table][0]) or {}
        prefix = re.match(r"([A-Z][A-Z_]*)#", pk.get("S", ""))
        return f"{self.label[table]}:{prefix.group(1)}" if prefix else self.label[table]

    def index_entry(self, table: str, index: dict, item: dict | None) -> dict | None:
        """The item's entry in a GSI, None if it is not in it (sparse: an index key missing)."""
        if not item or any(k not in item for k in index["keys"]):
            return None
        if index["type"] == "ALL":
            return item
        keep = {*self.keys[table], *index["keys"],
                *(index["include"] if index["type"] == "INCLUDE" else [])}
        return {k: v for k, v in item.items() if k in keep}

    def index_write_units(self, table: str, old: dict | None, new: dict | None) -> int:
        """Units of the index writes that turning `old` into `new` (None: no item) makes."""
        units = 0
        for index in self.indexes[table]:
            before, after = self.index_entry(table, index, old), self.index_entry(table, index, new)
            if before is None and after is None:
                continue
            if before is None or after is None:  # the item enters or leaves the index
                units += write_units(item_size(before if after is None else after))
            elif any(before[k] != after[k] for k in index["keys"]):  # a delete and a put
                units += write_units(item_size(before)) + write_units(item_size(after))
            elif before != after:  # an attribute the index holds changed
                units += write_units(max(item_size(before), item_size(after)))
        return units

    def write_capacity(self, table: str, old: dict | None, new: dict | None,
                       transactional: bool = False, ok: bool = True) -> tuple[int, int]:
        """(the item's write units, its indexes' write units) of a write that turns `old` into
        `new` (None: no item). ok False: a refused conditional write, billed on `old` alone."""
        factor = 2 if transactional else 1
        if not ok:
            return factor * write_units(item_size(old)), 0
        return (factor * write_units(max(item_size(old), item_size(new))),
                self.index_write_units(table, old, new))


# A session's idle timer, refreshed at most once a minute of use (shared/src/adapters/dynamodb.rs
# touch): counted apart, make cost models them from the profile.
SESSION_TOUCH = "SET last_seen_at = :now"


class Units:
    """Capacity units of the recorded DynamoDB calls of one phase: in all, by kind of item
    (Tables.kind_of), the index writes among them; the session touches apart (not in rru/wru)."""

    def __init__(self, tables: Tables, before: dict, after: dict):
        self.tables, self.after = tables, after
        self.state = dict(before)  # item by key as the phase's calls leave it, in their order
        self.rru = self.wru = self.index_wru = 0.0
        self.by_kind: dict[str, list[float]] = {}  # kind -> [rru, wru]
        self.touches, self.touch_wru = 0, 0.0
        self.outbox_items = 0  # items put in the outbox table (each a stream record)
        self.filtered_out = 0  # Query items read but dropped by a filter (sized as the returned)

    def add(self, operation: str, request: dict, status: int, answer: dict) -> None:
        ok = status == 200
        getattr(self, f"op_{operation}", self.op_other)(request, ok, answer)

    def _count(self, kind: str, rru: float = 0.0, wru: float = 0.0) -> None:
        self.rru += rru
        self.wru += wru
        entry = self.by_kind.setdefault(kind, [0.0, 0.0])
        entry[0] += rru
        entry[1] += wru

    # reads
    def _read(self, table: str, key: dict, returned: dict | None, projected: bool,
              consistent: bool, transactional: bool = False) -> None:
        size = item_size(self.state.get(self.tables.key_of(table, key))) if projected or \
            returned is None else item_size(returned)
        self._count(self.tables.kind_of(table, key),
                    rru=read_capacity(size, consistent, transactional))

    def op_GetItem(self, req, ok, answer):
        projected = bool(req.get("ProjectionExpression") or req.get("AttributesToGet"))
        self._read(req["TableName"], req["Key"], answer.get("Item"), projected,
                   bool(req.get("ConsistentRead")))

    def op_BatchGetItem(self, req, ok, answer):
        for table, spec in (req.get("RequestItems") or {}).items():
            projected = bool(spec.get("ProjectionExpression") or spec.get("AttributesToGet"))
            returned = {self.tables.key_of(table, i): i
                        for i in (answer.get("Responses") or {}).get(table, [])}
            for key in spec.get("Keys") or []:
                found = returned.get(self.tables.key_of(table, key))
                self._read(table, key, found, projected or found is None,
                           bool(spec.get("ConsistentRead")))

    def op_TransactGetItems(self, req, ok, answer):
        for item in req.get("TransactItems") or []:
            get = item["Get"]
            self._read(get["TableName"], get["Key"], None, True, True, transactional=True)

    def op_Query(self, req, ok, answer):
        table, index_name = req["TableName"], req.get("IndexName")
        index = next((i for i in self.tables.indexes[table] if i["name"] == index_name), None)
        items = answer.get("Items") or []
        projected = bool(req.get("ProjectionExpression") or req.get("AttributesToGet"))
        sizes = []
        for i in items:
            full = self.state.get(self.tables.key_of(table, i)) if projected else None
            if full is not None and index is not None:  # an index holds its entry, not the item
                full = self.tables.index_entry(table, index, full)
            sizes.append(item_size(full if full is not None else i))
        dropped = max(0, int(answer.get("ScannedCount", len(items))) - len(items))
        self.filtered_out += dropped
        total = sum(sizes) + dropped * (sum(sizes) / len(sizes) if sizes else 0)
        kind = (f"{self.tables.label[table]}:{index_name}" if index_name
                else self.tables.kind_of(table, items[0]) if items else self.tables.label[table])
        self._count(kind, rru=read_capacity(int(total), bool(req.get("ConsistentRead"))
                                            and index is None))

    op_Scan = op_Query

    # writes
    def _write(self, table: str, key: dict, kind: str, ok: bool, transactional: bool,
               put: dict | None = None, update: dict | None = None,
               old_answer: dict | None = None) -> None:
        k = self.tables.key_of(table, key)
        old = old_answer if old_answer is not None else self.state.get(k)
        touch = (update is not None and self.tables.label[table] == "sessions"
                 and (update.get("UpdateExpression") or "").strip() == SESSION_TOUCH)
        if kind == "ConditionCheck" or not ok:  # billed on the item it looked at, nothing written
            units, index_units = self.tables.write_capacity(table, old, None, transactional, ok=False)
        else:
            if kind == "Put":
                new = put
            elif kind == "Update":
                new = apply_update(old, update.get("UpdateExpression", ""),
                                   update.get("ExpressionAttributeNames"),
                                   update.get("ExpressionAttributeValues"), fallback=self.after.get(k))
            else:  # Delete
                new = None
            units, index_units = self.tables.write_capacity(table, old, new, transactional)
            if kind == "Put" and self.tables.label[table] == "outbox":
                self.outbox_items += 1
            if new is None:
                self.state.pop(k, None)
            else:
                self.state[k] = new
        if touch:
            self.touches += 1
            self.touch_wru += units + index_units
            return
        self.index_wru += index_units
        self._count(self.tables.kind_of(table, key), wru=units + index_units)

    def op_PutItem(self, req, ok, answer):
        self._write(req["TableName"], req["Item"], "Put", ok, False, put=req["Item"])

    def op_UpdateItem(self, req, ok, answer):
        self._write(req["TableName"], req["Key"], "Update", ok, False, update=req)

    def op_DeleteItem(self, req, ok, answer):
        self._write(req["TableName"], req["Key"], "Delete", ok, False,
                    old_answer=answer.get("Attributes") if ok else None)

    def op_BatchWriteItem(self, req, ok, answer):
        for table, requests in (req.get("RequestItems") or {}).items():
            for r in requests:
                if "PutRequest" in r:
                    item = r["PutRequest"]["Item"]
                    self._write(table, item, "Put", ok, False, put=item)
                else:
                    self._write(table, r["DeleteRequest"]["Key"], "Delete", ok, False)

    def op_TransactWriteItems(self, req, ok, answer):
        for item in req.get("TransactItems") or []:
            ((kind, spec),) = item.items()
            key = spec.get("Item") if kind == "Put" else spec["Key"]
            self._write(spec["TableName"], key, kind, ok, True, put=spec.get("Item"),
                        update=spec if kind == "Update" else None)

    def op_other(self, req, ok, answer):  # DescribeTable and the like: no capacity
        pass


# The functions' log lines: JSON objects, one a line (shared/src/telemetry.rs, metrics.rs). A line
# that only the local runtime makes them write (cargo lambda sets AWS_LAMBDA_MAX_CONCURRENCY, which
# Lambda sets only on its managed instances) is not counted.
LOCAL_ONLY_LOG = ("AWS_LAMBDA_MAX_CONCURRENCY",)


def function_log_record(line: bytes) -> dict | None:
    """A function's own log line parsed, None for any other line of the stack's log."""
    if not line.startswith(b"{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or any(m in str(record.get("message", ""))
                                           for m in LOCAL_ONLY_LOG):
        return None
    return record


# --- the run ---------------------------------------------------------------------------------------

class Call:
    """One AWS call a function made: its function, service operation, bodies and status."""
    __slots__ = ("function", "service", "operation", "request", "status", "answer", "answer_type",
                 "entries")

    def __init__(self, function, service, operation, request, status, answer, entries=0):
        self.function, self.service, self.operation = function, service, operation
        self.request, self.status, self.answer = request, status, answer
        self.answer_type = None  # an error answer's __type, once read
        self.entries = entries  # events:PutEvents: the events it put


class Phase:
    def __init__(self, kind: str):
        self.kind = kind
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.calls: list[Call] = []
        self.requests: list[int] = []  # HTTP requests of each operation that answered as expected
        self.units: Units | None = None
        self.rru = self.wru = 0.0
        self.filtered_out = 0
        self.seconds = 0.0
        self.log_lines = self.log_bytes = 0  # the functions' log lines written meanwhile
        self.send_email_invocations = 0


class NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Every request names its session itself (with_session): a client keeps no cookie."""

    def set_ok(self, cookie, request):
        return False


class Load:
    def __init__(self, stack, args, log_path: str):
        self.stack, self.args, self.log_path = stack, args, log_path
        self.deadline = time.monotonic() + args.max_seconds
        self.tables = Tables.of_stack(stack)
        self.custom_metrics: set[tuple] = set()  # (namespace, metric, dimensions) seen in the logs
        self.calls: list[Call] = []
        self._calls_lock = threading.Lock()
        stack.recorder.observer = self.observe
        self.local = threading.local()
        self.phases: list[Phase] = []
        self.snapshot = self.read_tables()
        self.expected_events: Counter = Counter()
        self.timed_out = False
        self.seed_phase: Phase | None = None

    # the recorder's observer (runs on its threads)
    def observe(self, method, path, headers, body, status, answer):
        lower = {k.lower(): v for k, v in headers.items()}
        target = lower.get("x-amz-target", "")
        function = re.search(r"(?:^|\s)app/(\S+)", " ".join(
            v for k, v in lower.items() if k in ("user-agent", "x-amz-user-agent")))
        if target.startswith("DynamoDB_"):
            service, operation = "dynamodb", target.rsplit(".", 1)[-1]
        else:
            action = actions_of_request(method, path, headers, body)[0]["action"]
            service, _, operation = action.partition(":")
        entries = 0
        if (service, operation) == ("events", "PutEvents"):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                entries = len(json.loads(body or b"{}").get("Entries") or [])
        call = Call(function.group(1) if function else None, service, operation,
                    body if service == "dynamodb" else None, status,
                    answer if service == "dynamodb" else None, entries)
        with self._calls_lock:
            self.calls.append(call)

    # HTTP
    def client(self) -> Portal:
        portal = getattr(self.local, "portal", None)
        if portal is None:
            portal = self.local.portal = Portal(self.stack.portal_url)
            portal.http.cookies.set_policy(NoCookies())
        return portal

    def request(self, method: str, path: str, expect: int, **kw):
        """One timed request; LoadError unless it answers `expect`."""
        client = self.client()
        started = time.perf_counter()
        resp = client.request(method, path, **kw)
        self.local.elapsed += time.perf_counter() - started
        self.local.requests += 1
        if resp.status_code != expect:
            raise LoadError(f"expected {expect}: {describe(resp)}")
        return resp

    def post_json(self, path: str, body, expect: int, headers: dict | None = None):
        return self.request("POST", path, expect, data=json.dumps(body), headers={
            "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})

    def get_json(self, path: str, expect: int, headers: dict | None = None):
        return self.request("GET", path, expect, headers={"Accept": "application/json",
                                                          **(headers or {})})

    # phases
    def run_phase(self, kind: str, jobs: list, measured: bool = True) -> list:
        """Runs the jobs (callables) of one kind, `--concurrency` at once; each one's time is the
        time of its HTTP requests. Then waits for the outbox stream and attributes every AWS call
        made meanwhile to the phase. Returns the jobs' results (None for a failed one)."""
        phase = Phase(kind)
        say(f"{kind}: {len(jobs)} operation(s)...")
        with self._calls_lock:
            first = len(self.calls)
        log_offset = os.path.getsize(self.log_path)
        invocations = self.send_email_invocations()
        started = time.monotonic()

        def timed(job):
            if time.monotonic() > self.deadline:
                self.timed_out = True
                phase.errors.append("not started: --max-seconds reached")
                return None
            self.local.elapsed, self.local.requests = 0.0, 0
            try:
                result = job()
            except Exception as e:  # noqa: BLE001 - any failure of an operation is its error
                phase.errors.append(f"{type(e).__name__}: {e}")
                return None
            phase.latencies.append(self.local.elapsed * 1000)
            phase.requests.append(self.local.requests)
            return result

        with concurrent.futures.ThreadPoolExecutor(self.args.concurrency) as pool:
            results = list(pool.map(timed, jobs))
        try:
            self.stack.settle(SETTLE_SECONDS)
        except local_aws.StackError as e:
            phase.errors.append(f"the outbox stream did not settle: {e}")
        phase.seconds = time.monotonic() - started
        with self._calls_lock:
            phase.calls = self.calls[first:]
        after = self.read_tables()
        units = Units(self.tables, self.snapshot, after)
        for call in phase.calls:
            if call.service == "dynamodb":
                answer = json.loads(call.answer or b"{}")
                if call.status != 200:
                    call.answer_type = answer.get("__type", f"HTTP {call.status}")
                units.add(call.operation, json.loads(call.request or b"{}"), call.status, answer)
                call.request = call.answer = None  # sized: the bodies are not needed again
        phase.units = units
        phase.rru, phase.wru, phase.filtered_out = units.rru, units.wru, units.filtered_out
        phase.send_email_invocations = self.send_email_invocations() - invocations
        phase.log_lines, phase.log_bytes = self.function_log(log_offset)
        self.snapshot = after
        if measured:
            self.phases.append(phase)
        else:
            self.seed_phase = phase
        if phase.errors:
            say(f"{kind}: {len(phase.errors)} error(s), the first: {phase.errors[0]}")
        return results

    def send_email_invocations(self) -> int:
        return sum(relay.invocations for relay in self.stack.relays)

    def function_log(self, offset: int) -> tuple[int, int]:
        """(lines, bytes) of the functions' own log lines in the stack's log from `offset` on: the
        JSON lines they write to stdout, which Lambda sends to CloudWatch Logs (cargo lambda's own
        lines and moto's are not JSON; a start-up warning of the local runtime is left out). The
        custom metrics of their embedded metric format lines are noted in custom_metrics."""
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        lines = size = 0
        for line in chunk.splitlines():
            record = function_log_record(line)
            if record is None:
                continue
            lines, size = lines + 1, size + len(line)
            for directive in (record.get("_aws") or {}).get("CloudWatchMetrics") or []:
                for dimensions in directive.get("Dimensions") or [[]]:
                    for metric in directive.get("Metrics") or []:
                        self.custom_metrics.add((directive.get("Namespace"), metric.get("Name"),
                                                 tuple(dimensions)))
        return lines, size

    def read_tables(self) -> dict:
        """Every item of the stack's tables, by key (Scans straight to moto: not recorded)."""
        ddb = local_aws.client("dynamodb", self.stack.aws_endpoint)
        items = {}
        for table in self.tables.keys:
            kw = {"TableName": table}
            while True:
                page = ddb.scan(**kw)
                for item in page["Items"]:
                    items[self.tables.key_of(table, item)] = item
                if "LastEvaluatedKey" not in page:
                    break
                kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    def emails_to(self, address: str, subject: str) -> list[dict]:
        return [m for m in self.stack.emails() if subject == m["subject"]
                and address.lower() in (t.lower() for t in m["to"])]

    def one_email(self, address: str, subject: str) -> dict:
        found = self.emails_to(address, subject)
        if not found:
            raise LoadError(f"no email {subject!r} to {address} after the outbox settled")
        return found[-1]

    # --- seeding ----------------------------------------------------------------------------------

    def seed(self, users: int, totp_users: int, email_code_users: int) -> list[dict]:
        """Registers `users` contacts through POST /register (each one's session kept); the first
        totp_users set up TOTP, the next email_code_users emailed sign-in codes."""
        run = f"{int(time.time()):x}"

        def register(i):
            def job():
                user = {"email": f"load-{run}-{i:05d}@example.com", "password": strong_password(),
                        "first_name": "Load", "last_name": f"User{i:05d}"}
                resp = self.post_json("/register", user, 201)
                user["session"] = session_token(resp)
                user["contact_id"] = resp.json()["contact_id"]
                if i < totp_users:
                    begun = self.post_json("/profile/two-factor/totp",
                                           {"current_password": user["password"]}, 200,
                                           with_session(user["session"]))
                    user["totp"] = begun.json()["secret"]
                    self.post_json("/profile/two-factor/totp/confirm",
                                   {"code": totp(user["totp"])}, 200, with_session(user["session"]))
                elif i < totp_users + email_code_users:
                    self.post_json("/profile/two-factor/email",
                                   {"current_password": user["password"], "enabled": True}, 200,
                                   with_session(user["session"]))
                    user["email_code"] = True
                return user
            return job

        say(f"seeding {users} users through POST /register ({totp_users} with TOTP, "
            f"{email_code_users} with emailed codes)...")
        seeded = self.run_phase("seed: register", [register(i) for i in range(users)],
                                measured=False)
        self.expected_events["ContactRegistered"] += sum(1 for u in seeded if u)
        return [u for u in seeded if u]

    # --- the day ----------------------------------------------------------------------------------

    def day(self, users: list[dict], counts: dict[str, int]) -> None:
        rng = random.Random(20261207)
        plain = [u for u in users if "totp" not in u and "email_code" not in u]
        rng.shuffle(plain)
        taken = iter(plain)

        def pick(n):
            return [next(taken) for _ in range(n)]

        signing_in = pick(counts["sign in"])
        wrong = pick(counts["sign in, wrong password"])
        resetting = pick(counts["forgot password"])
        totp_users = [u for u in users if "totp" in u][:counts["sign in, TOTP"]]
        code_users = [u for u in users if "email_code" in u][:counts["sign in, email code: ask"]]

        # public pages
        def page(path):
            return lambda: self.request("GET", path, 200, headers={"Accept": BROWSER_ACCEPT})
        self.run_phase("public page", [page(PUBLIC_PAGES[i % len(PUBLIC_PAGES)])
                                       for i in range(counts["public page"])])

        # password sign-ins: the day's sessions
        def sign_in(user):
            def job():
                resp = self.post_json("/signin", {"login": user["email"],
                                                  "password": user["password"]}, 200)
                return session_token(resp)
            return job
        sessions = [(u, s) for u, s in zip(signing_in, self.run_phase(
            "sign in", [sign_in(u) for u in signing_in])) if s]

        def wrong_password(user):
            return lambda: self.post_json("/signin", {"login": user["email"],
                                                      "password": "not-the-password-at-all"}, 401)
        self.run_phase("sign in, wrong password", [wrong_password(u) for u in wrong])

        def totp_sign_in(user):
            def job():
                first = self.post_json("/signin", {"login": user["email"],
                                                   "password": user["password"]}, 200)
                if first.json().get("status") != "second_factor_required":
                    raise LoadError(f"expected second_factor_required: {describe(first)}")
                pending = find_cookie(first, "portal_pending").value
                # The next step's code: the set-up used the current one (one step of drift).
                done = self.post_json("/signin/second-factor", {"code": totp(user["totp"], 1)},
                                      200, {"Cookie": f"portal_pending={pending}"})
                return session_token(done)
            return job
        self.run_phase("sign in, TOTP", [totp_sign_in(u) for u in totp_users])

        def ask_code(user):
            def job():
                first = self.post_json("/signin", {"login": user["email"],
                                                   "password": user["password"]}, 200)
                if "email" not in first.json().get("methods", []):
                    raise LoadError(f"expected the email method: {describe(first)}")
                pending = find_cookie(first, "portal_pending").value
                self.post_json("/signin/second-factor/email", {}, 202,
                               {"Cookie": f"portal_pending={pending}"})
                return user, pending
            return job
        asked = [a for a in self.run_phase("sign in, email code: ask",
                                           [ask_code(u) for u in code_users]) if a]

        def verify_code(user, pending):
            def job():
                body = self.one_email(user["email"], "Your sign-in code")["body"]
                code = re.search(r"^\s+(\d{6})\s*$", body, re.MULTILINE).group(1)
                done = self.post_json("/signin/second-factor", {"code": code}, 200,
                                      {"Cookie": f"portal_pending={pending}"})
                return session_token(done)
            return job
        self.run_phase("sign in, email code: verify", [verify_code(u, p) for u, p in asked])

        # signed-in page views, spread over the sessions
        def view(session):
            return lambda: self.get_json("/profile", 200, with_session(session))
        self.run_phase("profile view", [view(sessions[i % len(sessions)][1])
                                        for i in range(counts["profile view"])] if sessions else [])

        run = f"{int(time.time()):x}"

        def register(i):
            def job():
                user = {"email": f"load-new-{run}-{i:04d}@example.com",
                        "password": strong_password(), "first_name": "New", "last_name": "User"}
                self.post_json("/register", user, 201)
                return user
            return job
        registered = self.run_phase("register", [register(i) for i in range(counts["register"])])
        self.expected_events["ContactRegistered"] += sum(1 for r in registered if r)

        admin = self.admin_session()

        def invite(i):
            def job():
                email = f"load-invitee-{run}-{i:04d}@example.com"
                self.post_json("/admin/invitations", {"email": email, "first_name": "Invited",
                                                      "last_name": f"Guest{i:04d}"}, 201,
                               with_session(admin))
                return email
            return job
        invited = [e for e in self.run_phase("create invitation", [
            invite(i) for i in range(counts["create invitation"])]) if e]
        self.expected_events["InvitationCreated"] += len(invited)
        self.expected_events["InvitationSent"] += len(invited)

        def redeem(email):
            def job():
                mail = self.one_email(email, "You're invited to the customer portal")
                code = emailed_invitation_code(mail, self.stack.portal_url)
                self.post_json("/redeem", {"code": code, "password": strong_password()}, 201)
                return email
            return job
        redeemed = [e for e in self.run_phase("redeem invitation", [
            redeem(e) for e in invited[:counts["redeem invitation"]]]) if e]
        self.expected_events["InvitationRedeemed"] += len(redeemed)
        self.expected_events["ContactRegistered"] += len(redeemed)

        def forgot(user):
            def job():
                self.post_json("/forgot-password", {"email": user["email"]}, 202)
                return user
            return job
        asked_reset = [u for u in self.run_phase("forgot password",
                                                 [forgot(u) for u in resetting]) if u]

        def reset(user):
            def job():
                mail = self.one_email(user["email"], "Reset your password")
                token = emailed_token(mail, self.stack.portal_url, "/reset-password")
                user["password"] = strong_password()
                self.post_json("/reset-password", {"token": token,
                                                   "new_password": user["password"]}, 204)
                return user
            return job
        done_reset = [u for u in self.run_phase("reset password", [
            reset(u) for u in asked_reset[:counts["reset password"]]]) if u]
        self.expected_events["PasswordChanged"] += len(done_reset)

        # password changes and sign-outs: sessions of the day's sign-ins, none used twice
        changing = sessions[-counts["change password"]:]
        leaving = sessions[:max(0, len(sessions) - len(changing))][:counts["sign out"]]

        def change(user, session):
            def job():
                new = strong_password()
                self.post_json("/profile/password", {"current_password": user["password"],
                                                     "new_password": new}, 204,
                               with_session(session))
                user["password"] = new
                return user
            return job
        changed = [u for u in self.run_phase("change password", [
            change(u, s) for u, s in changing]) if u]
        self.expected_events["PasswordChanged"] += len(changed)

        def sign_out(session):
            return lambda: self.request("POST", "/signout", 204, data="{}", headers={
                "Content-Type": "application/json", **with_session(session)})
        self.run_phase("sign out", [sign_out(s) for _, s in leaving])

    def admin_session(self) -> str:
        resp = Portal(self.stack.portal_url).signin(self.stack.admin_email,
                                                    self.stack.admin_password)
        if resp.status_code != 200:
            raise LoadError(f"the administrator's sign-in: {describe(resp)}")
        return session_token(resp)

    # --- nothing lost -----------------------------------------------------------------------------

    def check_delivery(self, timeout: float) -> dict:
        """Waits (up to `timeout` s) until every outbox item is settled, then compares the outbox
        with what SES sent and what reached the bus's tap queue."""
        deadline = time.monotonic() + timeout
        outbox = self.tables_by_logical("OutboxTable")
        while True:
            items = self.scan(outbox)
            unsettled = [i for i in items if i.get("status", {}).get("S") not in ("sent",)
                         and "kind" in i]
            if not unsettled or time.monotonic() > deadline:
                break
            time.sleep(1)
        kinds = Counter((i["kind"]["S"], i.get("status", {}).get("S", "?")) for i in items
                        if "kind" in i)
        email_items = sum(n for (k, s), n in kinds.items() if k != "event" and s == "sent")
        # An event's outbox item is keyed by the event's id (OutboxMessage::for_event).
        event_ids = {i["pk"]["S"] for i in items if i.get("kind", {}).get("S") == "event"}
        published = local_aws.published_events(self.stack.aws_endpoint)
        published_ids = Counter(e.get("detail", {}).get("event_id") for e in published)
        by_type = Counter(e.get("detail-type") for e in published)
        sent = self.stack.emails()
        missing_events = event_ids - set(published_ids)
        expected = {t: (n, by_type.get(t, 0)) for t, n in sorted(self.expected_events.items())}
        return {
            "outbox_items": {f"{k} {s}": n for (k, s), n in sorted(kinds.items())},
            "unsettled": len(unsettled),
            "emails_in_outbox_sent": email_items, "emails_sent_by_ses": len(sent),
            "events_in_outbox": len(event_ids), "events_on_tap_queue": len(published),
            "events_missing": len(missing_events),
            "events_duplicated": sum(1 for n in published_ids.values() if n > 1),
            "events_by_type": dict(sorted(by_type.items())),
            "expected_events": {t: {"expected": e, "published": p} for t, (e, p) in expected.items()},
        }

    def tables_by_logical(self, logical_id: str) -> str:
        return self.stack.tables[logical_id]

    def scan(self, table: str) -> list[dict]:
        ddb = local_aws.client("dynamodb", self.stack.aws_endpoint)
        items, kw = [], {"TableName": table}
        while True:
            page = ddb.scan(**kw)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def say(msg: str) -> None:
    print(f"[load] {msg}", file=sys.stderr, flush=True)


# --- the report ------------------------------------------------------------------------------------

def error_type(answer_type: str | None) -> str:
    """ConditionalCheckFailedException from com.amazonaws.dynamodb.v20120810#Conditional..."""
    return (answer_type or "?").rsplit("#", 1)[-1]


def phase_summary(phase: Phase) -> dict:
    n = len(phase.latencies) + len(phase.errors)
    ops = max(1, len(phase.latencies))
    ddb = [c for c in phase.calls if c.service == "dynamodb"]
    path = Counter(c.operation for c in ddb if c.function != SEND_EMAIL)
    later = Counter(c.operation for c in ddb if c.function == SEND_EMAIL)
    other = Counter(f"{c.service}:{c.operation}" for c in phase.calls if c.service != "dynamodb")
    units = phase.units

    def per_op(x):
        return round(x / ops, 3)
    return {
        "kind": phase.kind, "count": n, "ok": len(phase.latencies), "errors": len(phase.errors),
        "first_errors": phase.errors[:3],
        "p50_ms": round(percentile(phase.latencies, 50), 1),
        "p95_ms": round(percentile(phase.latencies, 95), 1),
        "seconds": round(phase.seconds, 1),
        "http_per_op": per_op(sum(phase.requests)),
        "ddb_calls": len(ddb), "ddb_calls_request_path": sum(path.values()),
        "ddb_calls_send_email": sum(later.values()),
        "ddb_refused_calls": dict(sorted(Counter(
            error_type(c.answer_type) for c in ddb if c.status != 200).items())),
        "ddb_calls_per_op": round(sum(path.values()) / ops, 2),
        "ddb_send_email_calls_per_op": round(sum(later.values()) / ops, 2),
        "request_path_calls": dict(sorted(path.items())), "send_email_calls": dict(sorted(later.items())),
        "other_aws_calls": dict(sorted(other.items())),
        "rru": phase.rru, "wru": phase.wru,
        "rru_per_op": per_op(phase.rru), "wru_per_op": per_op(phase.wru),
        "index_wru_per_op": per_op(units.index_wru if units else 0),
        "by_kind_per_op": {k: [per_op(r), per_op(w)] for k, (r, w) in
                           sorted((units.by_kind if units else {}).items())},
        "session_touches": units.touches if units else 0,
        "session_touch_wru": units.touch_wru if units else 0,
        "outbox_items_per_op": per_op(units.outbox_items if units else 0),
        "events_per_op": per_op(sum(c.entries for c in phase.calls
                                    if (c.service, c.operation) == ("events", "PutEvents"))),
        "emails_per_op": per_op(sum(1 for c in phase.calls if c.service in ("ses", "sesv2")
                                    and c.operation in ("SendEmail", "SendRawEmail"))),
        "kms_per_op": per_op(sum(1 for c in phase.calls if c.service == "kms")),
        "log_lines_per_op": per_op(phase.log_lines), "log_bytes_per_op": per_op(phase.log_bytes),
        "send_email_invocations": phase.send_email_invocations,
        "query_items_filtered_out": phase.filtered_out,
    }


def storage(tables: Tables, items: dict) -> dict:
    """What the tables hold: bytes as DynamoDB bills storage (each item's size plus 100 bytes,
    each index entry's likewise), per table, per user (a contact item), and the largest
    session."""
    users = sum(1 for (t, *_), i in items.items() if tables.kind_of(t, i) == "contacts:CONTACT")
    by_table = Counter()
    for (table, *_), item in items.items():
        by_table[tables.label[table]] += item_size(item) + 100
        for index in tables.indexes[table]:
            entry = tables.index_entry(table, index, item)
            if entry is not None:
                by_table[tables.label[table]] += item_size(entry) + 100
    sessions = [item_size(i) for (t, *_), i in items.items() if tables.label[t] == "sessions"]
    return {"bytes_by_table": dict(sorted(by_table.items())), "users": users,
            "bytes_per_user": round(sum(by_table.values()) / max(1, users)),
            "session_item_bytes": max(sessions, default=0)}


def units_record(report: dict) -> dict:
    """The per-operation measurement make cost prices (scripts/cost.py MEASURED's shape)."""
    run = report["run"]
    operations = {}
    for s in report["kinds"]:
        operations[s["kind"]] = {
            "count": s["ok"], "http": s["http_per_op"], "ddb_calls": s["ddb_calls_per_op"],
            "ddb_calls_send_email": s["ddb_send_email_calls_per_op"],
            "rru": s["rru_per_op"], "wru": s["wru_per_op"], "index_wru": s["index_wru_per_op"],
            "by_kind": s["by_kind_per_op"], "touches": round(s["session_touches"] / max(1, s["ok"]), 3),
            "outbox_items": s["outbox_items_per_op"], "events": s["events_per_op"],
            "emails": s["emails_per_op"], "kms": s["kms_per_op"],
            "log_lines": s["log_lines_per_op"], "log_bytes": s["log_bytes_per_op"]}
    return {
        "measured_at": {"date": run["date"], "commit": run["commit"], "dirty": run["dirty"],
                        "how": f"make load, scale {run['scale']:g}, concurrency "
                               f"{run['concurrency']}, moto {run['moto']}, {run['machine']}"},
        "operations": operations,
        "stored_bytes_per_user": report["storage"]["bytes_per_user"],
        "session_item_bytes": report["storage"]["session_item_bytes"],
        "custom_metrics": report["custom_metrics"],
    }


def month_table(summaries: dict) -> tuple[list[dict], dict]:
    """Units a month for cost.MAU users: each profile operation's measured units per operation
    times its day (USERS users) times SCALE_DOWN times DAYS_PER_MONTH; beside the units make cost
    prices (cost.MEASURED, an earlier run's)."""
    committed = cost.month_units(cost.MEASURED) if cost.MEASURED else {}
    rows = []
    total = {"rru": 0.0, "wru": 0.0, "model_rru": 0.0, "model_wru": 0.0}
    for kind in KINDS:
        if kind not in summaries:
            continue
        s = summaries[kind]
        ops_month = profile_day(kind) * SCALE_DOWN * DAYS_PER_MONTH
        rru, wru = s["rru_per_op"] * ops_month, s["wru_per_op"] * ops_month
        m_rru, m_wru = committed.get(kind, (0.0, 0.0))
        rows.append({"kind": kind, "ops_month": ops_month, "rru": rru, "wru": wru,
                     "usd": rru * cost.DDB_READ_UNIT + wru * cost.DDB_WRITE_UNIT,
                     "model_rru": m_rru, "model_wru": m_wru,
                     "model_usd": m_rru * cost.DDB_READ_UNIT + m_wru * cost.DDB_WRITE_UNIT})
        for k in ("rru", "wru", "model_rru", "model_wru"):
            total[k] += rows[-1][k]
    total["usd"] = total["rru"] * cost.DDB_READ_UNIT + total["wru"] * cost.DDB_WRITE_UNIT
    total["model_usd"] = (total["model_rru"] * cost.DDB_READ_UNIT
                          + total["model_wru"] * cost.DDB_WRITE_UNIT)
    return rows, total


def render(report: dict) -> str:
    out = []
    w = out.append
    meta = report["run"]
    w(f"make load: a simulated day, {meta['date']}, {meta['machine']}, commit {meta['commit']}"
      + (f" (uncommitted changes: {', '.join(meta['dirty'])})" if meta["dirty"] else ""))
    w(f"scale {meta['scale']} of a day of {USERS:,} users (100,000 MAU / {SCALE_DOWN}), "
      f"concurrency {meta['concurrency']}, SES rate {SES_MAX_SEND_RATE}/s, "
      f"moto {meta['moto']}, debug build (cargo lambda watch, prebuilt)")
    seed = report["seed"]
    w(f"seed: {seed['users']} users registered through POST /register ({seed['totp']} set up "
      f"TOTP, {seed['email_code']} emailed codes) in {seed['seconds']:.0f} s, "
      f"{seed['ddb_calls']} DynamoDB calls; not measured below")
    w(f"stack started in {meta['stack_seconds']:.0f} s (not counted); day {meta['day_seconds']:.0f} s; "
      f"seed and day {meta['seconds']:.0f} s of --max-seconds {meta['max_seconds']:g}; load average "
      f"{meta['load_before']:.1f} before, {meta['load_after']:.1f} after")
    w("")
    w("| operation | count | p50 ms | p95 ms | errors | HTTP/op | DynamoDB calls/op (request; "
      "send-email after) | RRU/op | WRU/op (index) | log lines; bytes/op |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in report["kinds"]:
        calls = f"{s['ddb_calls_per_op']:g}"
        if s["ddb_send_email_calls_per_op"]:
            calls += f"; {s['ddb_send_email_calls_per_op']:g}"
        w(f"| {s['kind']} | {s['count']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['errors']} "
          f"| {s['http_per_op']:g} | {calls} | {s['rru_per_op']:g} | {s['wru_per_op']:g} "
          f"({s['index_wru_per_op']:g}) | {s['log_lines_per_op']:g}; {s['log_bytes_per_op']:.0f} |")
    w("")
    w("Units per operation by what they read or wrote (table:key prefix RRU/WRU; an index "
      "query by its index), and what else each operation caused:")
    for s in report["kinds"]:
        kinds = ", ".join(f"{k} {r:g}/{wr:g}" for k, (r, wr) in s["by_kind_per_op"].items())
        extra = [f"{label} {s[key]:g}" for label, key in (
            ("outbox items", "outbox_items_per_op"), ("events", "events_per_op"),
            ("emails", "emails_per_op"), ("KMS requests", "kms_per_op")) if s[key]]
        if s["session_touches"]:
            extra.append(f"session touches {s['session_touches']} in all ({s['session_touch_wru']:g}"
                         f" WRU, not in WRU/op)")
        w(f"  {s['kind']}: {kinds or 'none'}" + (f"; per op: {', '.join(extra)}" if extra else ""))
    w("")
    w("DynamoDB calls of each kind, all its operations together (request path | send-email):")
    for s in report["kinds"]:
        path = ", ".join(f"{op} {n}" for op, n in s["request_path_calls"].items()) or "none"
        later = ", ".join(f"{op} {n}" for op, n in s["send_email_calls"].items())
        other = ", ".join(f"{op} {n}" for op, n in s["other_aws_calls"].items())
        line = f"  {s['kind']}: {path}"
        if later:
            line += f" | {later}"
        if other:
            line += f"; other AWS: {other}"
        if s["ddb_refused_calls"]:
            refused = ", ".join(f"{t} {n}" for t, n in s["ddb_refused_calls"].items())
            line += f"; refused (billed all the same): {refused}"
        if s["query_items_filtered_out"]:
            line += f"; {s['query_items_filtered_out']} query items filtered out"
        w(line)
    w("")
    w(f"Units: {report['units_method']}")
    st = report["storage"]
    w(f"Stored after the day: {st['bytes_per_user']:,} bytes per contact ({st['users']} contacts; "
      + ", ".join(f"{t} {b:,}" for t, b in st["bytes_by_table"].items())
      + f" bytes, items and index entries with 100 bytes each); largest session "
      f"{st['session_item_bytes']} bytes")
    w("Custom metrics in the functions' logs: " + (", ".join(
        f"{ns}/{name}" + (f" by {'+'.join(dims)}" if dims else "")
        for ns, name, dims in report["custom_metrics"]) or "none"))
    w("")
    at = cost.MEASURED.get("measured_at", {}) if cost.MEASURED else {}
    w(f"A month for {cost.MAU:,} MAU at the profile's rates (units per operation measured "
      f"above x the profile's day for {USERS:,} users x {SCALE_DOWN} x {DAYS_PER_MONTH}), "
      f"on demand at ${cost.DDB_READ_UNIT * 1e6:.3f} per million reads and "
      f"${cost.DDB_WRITE_UNIT * 1e6:.3f} per million writes, beside the units make cost prices "
      f"(scripts/cost.py MEASURED: {at.get('date', '-')}, commit {at.get('commit', '-')}):")
    w("")
    w("| operation | per month | RRU measured | WRU measured | $ measured | RRU make cost | "
      "WRU make cost | $ make cost |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    rows, total = report["month"]["rows"], report["month"]["total"]
    for r in rows:
        w(f"| {r['kind']} | {r['ops_month']:,.0f} | {r['rru']:,.0f} | {r['wru']:,.0f} | "
          f"${r['usd']:,.2f} | {r['model_rru']:,.0f} | {r['model_wru']:,.0f} | ${r['model_usd']:,.2f} |")
    w(f"| **DynamoDB reads and writes** | | {total['rru']:,.0f} | {total['wru']:,.0f} | "
      f"**${total['usd']:,.2f}** | {total['model_rru']:,.0f} | {total['model_wru']:,.0f} | "
      f"**${total['model_usd']:,.2f}** |")
    w("")
    w(f"(Session idle-timer writes are not in these rows: make cost models them from the profile. "
      f"The per-operation units are in {report['units_file']} for make cost --units.)")
    w("")
    d = report["delivery"]
    w(f"Nothing lost: outbox items {d['outbox_items']}; unsettled {d['unsettled']}; emails "
      f"sent per the outbox {d['emails_in_outbox_sent']}, through SES {d['emails_sent_by_ses']}; "
      f"events in the outbox {d['events_in_outbox']}, on the tap queue {d['events_on_tap_queue']} "
      f"(missing {d['events_missing']}, duplicated {d['events_duplicated']})")
    w("expected events: " + ", ".join(f"{t} {v['published']}/{v['expected']}"
                                      for t, v in d["expected_events"].items()))
    w(f"events by type: {d['events_by_type']}")
    w("")
    w("RESULT: " + ("ok" if not report["problems"] else "FAILED: " + "; ".join(report["problems"])))
    return "\n".join(out)


UNITS_METHOD = (
    "computed from the recorded calls' request and answer bodies, each item's state followed "
    "through the phase from the tables read before it (moto's ConsumedCapacity is a constant per "
    "call, not a measure): writes 1 WCU per started KB of the larger of the item before and after "
    "(refused conditional writes too, on the item looked at), transaction items 2x; an index of "
    "infra/template.yaml 1 WCU per started KB of its entry (what it projects) when the item enters "
    "or leaves it or an attribute it holds changes value, a delete and a put when its key changes; "
    "reads 1 RCU per started 4 KB strongly consistent, 0.5 eventually consistent (every index "
    "query), 2x transactional; session idle-timer touches counted apart")


def problems_of(report: dict) -> list[str]:
    found = []
    for s in report["kinds"]:
        if s["errors"]:
            found.append(f"{s['kind']}: {s['errors']} error(s), e.g. {s['first_errors'][0]}")
    if report["seed"]["errors"]:
        found.append(f"seeding: {report['seed']['errors']} error(s), e.g. "
                     f"{report['seed']['first_errors'][0]}")
    d = report["delivery"]
    if d["unsettled"]:
        found.append(f"{d['unsettled']} outbox item(s) not sent")
    if d["emails_in_outbox_sent"] != d["emails_sent_by_ses"]:
        found.append(f"emails: {d['emails_in_outbox_sent']} sent per the outbox, "
                     f"{d['emails_sent_by_ses']} through SES")
    if d["events_missing"] or d["events_in_outbox"] != d["events_on_tap_queue"]:
        found.append(f"events: {d['events_in_outbox']} in the outbox, {d['events_on_tap_queue']} "
                     f"published ({d['events_missing']} missing)")
    for t, v in d["expected_events"].items():
        if v["expected"] != v["published"]:
            found.append(f"{t}: {v['expected']} expected, {v['published']} published")
    if report["run"]["timed_out"]:
        found.append(f"--max-seconds {report['run']['max_seconds']} reached")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="load.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the day (and of the 1,000 users) to run (default 1)")
    parser.add_argument("--min-per-kind", type=int, default=3,
                        help="at least this many operations of every kind (default 3)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="operations at once (default 4)")
    parser.add_argument("--max-seconds", type=float, default=600,
                        help="time for the seed and the day, the stack's start not counted "
                             "(default 600)")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--log", help="the stack's log (default: a file under .local/load/)")
    parser.add_argument("--units-json", default=os.path.join(ROOT, ".local", "load-units.json"),
                        help="where to write the units per operation that make cost prices "
                             "(default .local/load-units.json; scripts/cost.py --units FILE)")
    args = parser.parse_args(argv)
    if args.scale <= 0 or args.min_per_kind < 1 or args.concurrency < 1:
        parser.error("--scale must be above 0, --min-per-kind and --concurrency at least 1")

    counts = {kind: day_count(kind, args.scale, args.min_per_kind) for kind in KINDS}
    counts["sign in, email code: verify"] = counts["sign in, email code: ask"]
    counts["redeem invitation"] = min(counts["redeem invitation"], counts["create invitation"])
    counts["reset password"] = min(counts["reset password"], counts["forgot password"])
    # Every sign-out and password change takes a session of the day's sign-ins.
    counts["sign in"] = max(counts["sign in"], counts["sign out"] + counts["change password"])
    needed = counts["sign in"] + counts["sign in, wrong password"] + counts["forgot password"]
    totp_users, code_users = counts["sign in, TOTP"], counts["sign in, email code: ask"]
    users = max(math.ceil(USERS * args.scale), needed) + totp_users + code_users

    local = os.path.join(ROOT, ".local", "load")
    os.makedirs(local, exist_ok=True)
    log = args.log or os.path.join(local, "stack.log")
    stack_name = f"portal-load-{os.getpid()}"
    # Under make test the calls go where the IAM coverage check reads them, in a file named after
    # the stack (scripts/iam_coverage.py reads the stack's name from it).
    calls_dir = os.environ.get("PORTAL_RECORD_AWS_CALLS_DIR")
    record = os.path.join(calls_dir or local, f"{stack_name}.jsonl")
    if not calls_dir:
        for old in os.listdir(local):  # the calls of earlier runs
            if old.startswith("portal-load-") and old.endswith(".jsonl"):
                os.unlink(os.path.join(local, old))

    import stack as stack_script
    portal_port = stack_script.free_port()
    moto_port = stack_script.free_port(avoid=(9000, 4566, portal_port))
    say(f"starting the local stack on ports {portal_port} (portal) and {moto_port} (moto); "
        f"its log: {log}")
    started = time.monotonic()
    stack = stack_script.start_stack(
        portal_port, moto_port, stack_name, settings=STACK_SETTINGS,
        log_path=log, record_calls=record, prebuilt=True, concurrency=args.concurrency,
        ses_max_send_rate=SES_MAX_SEND_RATE)
    try:
        stack_seconds = time.monotonic() - started
        say(f"stack up in {stack_seconds:.0f} s")
        load_before = os.getloadavg()[0]
        load = Load(stack, args, log)
        run_started = time.monotonic()
        seeded = load.seed(users, totp_users, code_users)
        day_started = time.monotonic()
        if len(seeded) == users:
            load.day(seeded, counts)
        day_seconds = time.monotonic() - day_started
        delivery = load.check_delivery(timeout=120)
        seed = phase_summary(load.seed_phase)
        kinds = [phase_summary(p) for p in load.phases]
        month_rows, month_total = month_table({s["kind"]: s for s in kinds})
        import moto
        commit, dirty = source_state()
        report = {
            "run": {"date": datetime.date.today().isoformat(), "commit": commit, "dirty": dirty,
                    "machine": f"{os.cpu_count()}-core {platform.machine()}",
                    "load_before": load_before, "load_after": os.getloadavg()[0],
                    "stack_seconds": stack_seconds,
                    "scale": args.scale, "concurrency": args.concurrency, "moto": moto.__version__,
                    "max_seconds": args.max_seconds, "timed_out": load.timed_out,
                    "seconds": time.monotonic() - run_started, "day_seconds": day_seconds,
                    "counts": counts},
            "seed": {"users": users, "totp": totp_users, "email_code": code_users,
                     "seconds": seed["seconds"], "ddb_calls": seed["ddb_calls"],
                     "errors": seed["errors"], "first_errors": seed["first_errors"],
                     "rru": seed["rru"], "wru": seed["wru"]},
            "kinds": kinds,
            "units_method": UNITS_METHOD,
            "storage": storage(load.tables, load.snapshot),
            "custom_metrics": sorted([ns, name, list(dims)]
                                     for ns, name, dims in load.custom_metrics),
            "month": {"rows": month_rows, "total": month_total},
            "delivery": delivery,
            "units_file": os.path.relpath(args.units_json, ROOT),
        }
        report["problems"] = problems_of(report)
    finally:
        stack.stop()
    print(render(report), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    if not report["problems"]:  # make cost --units prices only a clean run
        os.makedirs(os.path.dirname(os.path.abspath(args.units_json)), exist_ok=True)
        with open(args.units_json, "w", encoding="utf-8") as f:
            json.dump(units_record(report), f, indent=1)
    return 1 if report["problems"] else 0


def source_state() -> tuple[str, list[str]]:
    """The commit the functions were built from, and the files of the functions' code or template
    changed since it (the build takes the working tree; scripts, tests and docs do not count)."""
    import subprocess

    def git(*argv):
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=False).stdout
    commit = git("rev-parse", "--short=12", "HEAD").strip() or "?"
    # --no-optional-locks: no refresh of .git/index (a write in the checkout) from a status.
    status = git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    dirty = [line[3:] for line in status.splitlines()
             if not line[3:].startswith(("scripts/", "tests/", ".ci/")) and not line.endswith(".md")]
    return commit, dirty


if __name__ == "__main__":
    sys.exit(main())
