"""The sample events in events/: well-formed API Gateway HTTP API (payload 2.0) events, every one
listed in events/manifest.json, and each answering the manifest's status when invoked in order
with `cargo lambda invoke` against a freshly started stack."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
MANIFEST = json.loads((EVENTS / "manifest.json").read_text())
CARGO_LAMBDA = ROOT / ".venv" / "bin" / "cargo-lambda"
FUNCTIONS = {"sign-in", "register", "profile"}

ROUTES = {
    ("GET", "/"): "profile",
    ("GET", "/profile"): "profile",
    ("GET", "/signin"): "sign-in",
    ("POST", "/signin"): "sign-in",
    ("POST", "/signout"): "sign-in",
    ("GET", "/register"): "register",
    ("POST", "/register"): "register",
}


def load(entry) -> dict:
    return json.loads((ROOT / entry["file"]).read_text())


def test_manifest_lists_every_event_file_once():
    listed = [e["file"] for e in MANIFEST]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    on_disk = sorted(str(p.relative_to(ROOT)) for p in EVENTS.glob("*/*.json"))
    assert sorted(listed) == on_disk
    for e in MANIFEST:
        assert e["function"] in FUNCTIONS, e
        assert e["file"].startswith(f"events/{e['function']}/"), e
        assert isinstance(e["status"], int), e


def test_manifest_order_registers_before_using_the_account():
    files = [e["file"] for e in MANIFEST]
    new = files.index("events/register/post-json-new.json")
    assert new < files.index("events/register/post-json-taken.json")
    assert new < files.index("events/sign-in/post-json-ok.json")
    assert files.index("events/sign-in/post-json-ok.json") < files.index(
        "events/sign-in/post-json-wrong-password.json"
    )


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_event_is_a_well_formed_http_api_v2_event(entry):
    ev = load(entry)
    assert ev["version"] == "2.0"
    ctx = ev["requestContext"]
    method, path = ctx["http"]["method"], ctx["http"]["path"]
    assert ev["routeKey"] == ctx["routeKey"] == f"{method} {path}"
    assert ev["rawPath"] == path
    assert ROUTES[(method, path)] == entry["function"], "the route belongs to this function"
    assert isinstance(ev["rawQueryString"], str)
    assert all(k == k.lower() for k in ev["headers"]), "HTTP API lower-cases header names"
    assert "cookie" not in ev["headers"], "payload 2.0 carries cookies in the `cookies` array"
    assert all(isinstance(c, str) and "=" in c for c in ev.get("cookies", []))
    assert ctx["stage"] == "$default"
    for key in ("accountId", "apiId", "domainName", "requestId", "time"):
        assert isinstance(ctx[key], str) and ctx[key], key
    assert isinstance(ctx["timeEpoch"], int)
    assert ctx["http"]["sourceIp"] and ctx["http"]["userAgent"] == ev["headers"]["user-agent"]
    assert ev["headers"]["host"] == ctx["domainName"]
    assert ev["isBase64Encoded"] is False
    if method == "POST":
        assert isinstance(ev["body"], str)
        assert ev["headers"]["content-length"] == str(len(ev["body"].encode()))
        ctype = ev["headers"].get("content-type", "")
        name = Path(entry["file"]).name
        if ctype == "application/json" and "malformed" not in name and ev["body"]:
            json.loads(ev["body"])
    else:
        assert "body" not in ev or ev["body"] in (None, "")


def invoke(function: str, data_file: str, port: int) -> dict:
    cmd = [
        str(CARGO_LAMBDA), "lambda", "invoke", function,
        "--data-file", data_file,
        "--invoke-port", str(port),
        "--invoke-address", "127.0.0.1",
        "--output-format", "json",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return json.loads(proc.stdout)


def test_every_event_answers_its_manifest_status(stack):
    """Run in manifest order (later events depend on earlier ones); report every mismatch.
    The session's stack serves: the other tests use unique emails, never ada@ or grace@."""
    mismatches = []
    for entry in MANIFEST:
        response = invoke(entry["function"], entry["file"], stack.portal_port)
        got = response.get("statusCode")
        if got != entry["status"]:
            body = str(response.get("body", ""))[:300]
            mismatches.append(f"{entry['file']}: expected {entry['status']}, got {got}: {body}")
    assert not mismatches, "\n".join(mismatches)
