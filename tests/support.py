"""Helpers shared by the end-to-end tests: an HTTP client for the portal, HTML parsing of forms and
links, Set-Cookie parsing and unique test identities."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

import requests

TIMEOUT = 60  # seconds; the first request to a function may wait for cargo lambda to start it

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FORM_TYPE = "application/x-www-form-urlencoded"

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = os.environ.get("PORTAL_ADMIN_PASSWORD", "violet-harbor-lantern-42")

SESSION_COOKIE = "portal_session"
CSRF_COOKIE = "portal_csrf"


# --- identities -----------------------------------------------------------------------------------

def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


def unique_username(tag: str = "u") -> str:
    return f"{tag}{uuid.uuid4().hex[:10]}"


def strong_password() -> str:
    # Long, unrelated words plus a random part: zxcvbn scores this 4.
    return f"Tangerine-Walrus-Orbit-{uuid.uuid4().hex[:6]}"


def registration(**overrides) -> dict:
    body = {
        "email": unique_email(),
        "password": strong_password(),
        "first_name": "Ada",
        "last_name": "Lovelace",
    }
    body.update(overrides)
    return body


# --- Set-Cookie -----------------------------------------------------------------------------------

@dataclass
class SetCookie:
    name: str
    value: str
    attrs: dict = field(default_factory=dict)  # lower-cased attribute name -> value ('' for flags)
    raw: str = ""

    def has(self, attr: str) -> bool:
        return attr.lower() in self.attrs


def parse_set_cookie(header: str) -> SetCookie:
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        if not p:
            continue
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return SetCookie(name.strip(), value.strip(), attrs, header)


def set_cookies(resp: requests.Response) -> list[SetCookie]:
    """Every Set-Cookie header of a response, unmerged."""
    headers = resp.raw.headers
    values = headers.getlist("Set-Cookie") if hasattr(headers, "getlist") else []
    return [parse_set_cookie(v) for v in values]


def find_cookie(resp: requests.Response, name: str) -> SetCookie | None:
    """The Set-Cookie for `name` (or its __Host- form) that sets a value, if any."""
    for c in set_cookies(resp):
        if c.name in (name, "__Host-" + name):
            return c
    return None


def session_token(resp: requests.Response) -> str:
    c = find_cookie(resp, SESSION_COOKIE)
    assert c is not None, (
        f"expected a Set-Cookie for {SESSION_COOKIE}, got {[s.raw for s in set_cookies(resp)]}"
    )
    assert c.value, f"session cookie has an empty value: {c.raw}"
    return c.value


# --- HTML -----------------------------------------------------------------------------------------

@dataclass
class Form:
    attrs: dict
    inputs: list = field(default_factory=list)  # dicts of attributes of <input>/<textarea>/<select>
    buttons: list = field(default_factory=list)  # (attrs, text)

    def field_names(self) -> set[str]:
        return {i.get("name") for i in self.inputs if i.get("name")}

    def value(self, name: str) -> str | None:
        for i in self.inputs:
            if i.get("name") == name:
                return i.get("value", "")
        return None

    def submit_labels(self) -> list[str]:
        labels = [text for attrs, text in self.buttons if attrs.get("type", "submit") == "submit"]
        labels += [i.get("value", "") for i in self.inputs if i.get("type") == "submit"]
        return [" ".join(label.split()) for label in labels]


class Page(HTMLParser):
    """Collects forms, links and elements by id from an HTML page."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []  # (text, href)
        self.ids: dict[str, str] = {}  # id -> text content
        self._form: Form | None = None
        self._link: list | None = None
        self._button: list | None = None
        self._open_ids: list[list] = []  # [id, tag, depth, text]
        self._depth = 0
        self.feed(html)
        self.close()

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = Form(a)
            self.forms.append(self._form)
        elif tag in ("input", "textarea", "select") and self._form is not None:
            self._form.inputs.append(dict(a, _tag=tag))
        elif tag == "button" and self._form is not None:
            self._button = [a, ""]
        elif tag == "a":
            self._link = [a.get("href", ""), ""]
        if tag not in self.VOID:
            self._depth += 1
            if "id" in a:
                self._open_ids.append([a["id"], tag, self._depth, ""])

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if tag == "form":
            self._form = None
        elif tag == "button" and self._button is not None and self._form is not None:
            self._form.buttons.append((self._button[0], self._button[1]))
            self._button = None
        elif tag == "a" and self._link is not None:
            self.links.append((" ".join(self._link[1].split()), self._link[0]))
            self._link = None
        while self._open_ids and self._open_ids[-1][2] >= self._depth:
            ident, _, _, text = self._open_ids.pop()
            self.ids[ident] = " ".join(text.split())
        self._depth -= 1

    def handle_data(self, data):
        if self._link is not None:
            self._link[1] += data
        if self._button is not None:
            self._button[1] += data
        for entry in self._open_ids:
            entry[3] += data

    def close(self):
        super().close()
        for ident, _, _, text in self._open_ids:
            self.ids.setdefault(ident, " ".join(text.split()))
        self._open_ids = []

    def form(self, form_id: str) -> Form:
        for f in self.forms:
            if f.attrs.get("id") == form_id:
                return f
        raise AssertionError(
            f"no <form id={form_id!r}> on the page; forms: {[f.attrs for f in self.forms]}"
        )

    def link_href(self, text: str) -> str | None:
        for t, href in self.links:
            if t == text:
                return href
        return None


def path_of(url: str) -> str:
    """The path of an absolute or relative URL (for Location headers and hrefs)."""
    return urlsplit(url).path


# --- client ---------------------------------------------------------------------------------------

class Portal:
    """A requests session against the portal; redirects are never followed automatically."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return self.base_url + path

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return self.http.request(method, self.url(path), **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    # JSON API
    def post_json(self, path: str, body, headers=None, **kw) -> requests.Response:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.post(path, data=data, headers=h, **kw)

    def get_json(self, path: str, headers=None, **kw) -> requests.Response:
        h = {"Accept": "application/json"}
        h.update(headers or {})
        return self.get(path, headers=h, **kw)

    # Browser-like
    def get_page(self, path: str, **kw) -> requests.Response:
        return self.get(path, headers={"Accept": BROWSER_ACCEPT}, **kw)

    def post_form(self, path: str, fields: dict, headers=None, **kw) -> requests.Response:
        h = {"Content-Type": FORM_TYPE, "Accept": BROWSER_ACCEPT, "Origin": self.base_url}
        h.update(headers or {})
        return self.post(path, data=fields, headers=h, **kw)

    def register(self, **overrides) -> tuple[dict, requests.Response]:
        body = registration(**overrides)
        resp = self.post_json("/register", body)
        return body, resp

    def signin(self, login: str, password: str) -> requests.Response:
        return self.post_json("/signin", {"login": login, "password": password})


def with_session(token: str) -> dict:
    """A Cookie header carrying exactly this session token (bypassing any cookie jar)."""
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


def error_body(resp: requests.Response) -> dict:
    """The JSON error body; asserts the contract's shape."""
    ctype = resp.headers.get("Content-Type", "")
    assert "application/json" in ctype, (
        f"error response should be JSON, got {ctype!r}: {resp.text[:300]!r}"
    )
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def describe(resp: requests.Response) -> str:
    return f"{resp.request.method} {resp.request.url} -> {resp.status_code} {resp.text[:400]!r}"


# --- emails recorded by the local SES (account self-service) ---------------------------------------

EMAIL_WAIT = 30  # seconds; the stream relay delivers within a couple of seconds


def emails_to(stack, address: str, subject: str | None = None) -> list[dict]:
    """Emails sent so far to `address` (optionally with this subject), oldest first."""
    return [m for m in stack.emails()
            if address.lower() in (t.lower() for t in m["to"])
            and (subject is None or m["subject"] == subject)]


def await_emails(stack, address: str, subject: str, count: int = 1,
                 timeout: float = EMAIL_WAIT) -> list[dict]:
    """Waits until at least `count` emails with `subject` reached `address`; returns them all."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = emails_to(stack, address, subject)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"expected {count} email(s) {subject!r} to {address} within {timeout}s, got "
                f"{len(found)}; all emails to it: "
                f"{[m['subject'] for m in emails_to(stack, address)]}")
        time.sleep(0.1)


def emailed_token(email: dict, base_url: str, path: str) -> str:
    """The token of the `<base_url><path>?token=<t>` link in an email's body."""
    import re

    pattern = re.escape(base_url.rstrip("/") + path) + r"\?token=([A-Za-z0-9_-]+)"
    match = re.search(pattern, email["body"])
    assert match, f"no {base_url}{path}?token= link in the email: {email['body']!r}"
    return match.group(1)


# --- invitations (issue 3) ------------------------------------------------------------------------

INVITATION_SUBJECT = "You're invited to the customer portal"
INVITATION_SENDER = "no-reply@example.com"
# 32 Crockford base32 characters in 8 hyphenated groups of 4.
INVITATION_CODE_PATTERN = r"[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){7}"


def emailed_invitation_code(email: dict, base_url: str) -> str:
    """The code in an invitation email, checked against its `<base_url>/redeem?code=<code>` link."""
    import re

    link = re.search(re.escape(base_url.rstrip("/") + "/redeem?code=") + r"(\S+)", email["body"])
    assert link, f"no {base_url}/redeem?code= link in the email: {email['body']!r}"
    code = link.group(1)
    assert re.fullmatch(INVITATION_CODE_PATTERN, code), f"unexpected code format: {code!r}"
    shown = re.findall(r"(?<![0-9A-Z-])" + INVITATION_CODE_PATTERN + r"(?![0-9A-Z-])",
                       email["body"])
    assert code in shown, f"the code should also be shown on its own: {email['body']!r}"
    return code


def outbox_stream_records(stack) -> list[dict]:
    """Every record of the outbox table's stream on the local endpoint, in the shape Lambda
    delivers (epoch seconds, eventSourceARN added), oldest first."""
    import datetime

    import boto3

    kw = dict(endpoint_url=stack.aws_endpoint, region_name=stack.env["AWS_REGION"],
              aws_access_key_id="test", aws_secret_access_key="test")
    table = stack.tables["OutboxTable"]
    arn = boto3.client("dynamodb", **kw).describe_table(TableName=table)["Table"][
        "LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", **kw)
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            resp = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not resp.get("Records"):
                break
            records += resp["Records"]
            iterator = resp.get("NextShardIterator")
    for r in records:
        created = r["dynamodb"].get("ApproximateCreationDateTime")
        if isinstance(created, datetime.datetime):
            r["dynamodb"]["ApproximateCreationDateTime"] = int(created.timestamp())
        r["eventSourceARN"] = arn
    return records


def invoke_function(stack, function: str, event: dict) -> dict:
    """Invokes a function of the running stack with a raw event (cargo lambda's invoke API, as the
    stream relay does) and returns its JSON answer."""
    req = requests.post(f"http://127.0.0.1:{stack.portal_port}/2015-03-31/functions/{function}/"
                        f"invocations", json=event, timeout=TIMEOUT)
    assert req.status_code == 200, f"invoking {function}: {req.status_code} {req.text[:500]}"
    return req.json()
