"""The local OpenID Connect provider of the tests (scripts/oidc_provider.mjs, npm's oidc-provider):
start and stop it, and sign in at it through its own development login and consent pages, as a
browser would, with plain HTTP form posts.

Accounts (any password; any other login is accepted too, as its own account with a verified email):
oidc-user@example.com (Olive Ida), oidc-mfa@example.com (amr pwd + mfa), oidc-unverified@example.com
(email_verified false). Clients (secret portal-secret): portal, and portal-wrong-aud,
portal-expired, portal-bad-sig, whose ID tokens are spoilt one way each."""

from __future__ import annotations

import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
CLIENT_SECRET = "portal-secret"
USER_EMAIL, USER_PASSWORD = "oidc-user@example.com", "oidc-password-1"
MFA_EMAIL = "oidc-mfa@example.com"
UNVERIFIED_EMAIL = "oidc-unverified@example.com"
READY = "oidc-provider listening on "


def start_provider(port: int, timeout: float = 20.0) -> subprocess.Popen:
    """Start the provider on localhost:port (issuer http://localhost:port); returns once it has
    printed its ready line (not on a discovery document, which another provider already on that
    port would answer). Raises, with what the process printed, if it does not in time. Its output
    goes to a temporary file (proc.log), not to a pipe that nobody would read."""
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(["node", "scripts/oidc_provider.mjs", "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    deadline = time.monotonic() + timeout
    while True:
        log.seek(0)
        output = log.read()
        if READY in output:
            return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stop_provider(proc)
    raise RuntimeError(f"the OpenID Connect provider did not start on port {port} "
                       f"(exit code {proc.returncode}):\n{output}")


def stop_provider(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if getattr(proc, "log", None):
        proc.log.close()


class _Page(HTMLParser):
    """The forms (action, method, hidden inputs) and links of one of the provider's pages."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.links: dict[str, str] = {}  # text -> href
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                               "fields": {}})
        elif tag == "input" and self.forms and a.get("type") == "hidden" and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif tag == "a":
            self._href = a.get("href")

    def handle_data(self, data):
        if self._href is not None and data.strip():
            self.links[data.strip()] = self._href

    def handle_endtag(self, tag):
        if tag == "a":
            self._href = None


def sign_in_at_provider(authorize_url: str, login: str, password: str, consent: bool = True,
                        session: requests.Session | None = None) -> str:
    """Follow authorize_url through the provider's login and consent pages (submitting its own
    forms) and return the Location that sends the browser back to the relying party: the callback
    with code, state and iss, or with error=access_denied where consent is False (the pages'
    "[ Cancel ]" link, followed on the consent page). The callback itself is not requested.
    session: the provider's cookies, for a second sign-in in the same "browser" (no login page
    then, and no consent page for a client already consented to)."""
    http = session or requests.Session()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(authorize_url))
    url, method, data = authorize_url, "get", None
    refused = False
    for _ in range(12):
        response = http.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if not location.startswith(origin + "/"):
                if not consent and not refused:
                    raise AssertionError(f"no consent page to refuse (consent given before?): {location}")
                return location
            url, method, data = location, "get", None
            continue
        if response.status_code != 200 or "text/html" not in response.headers.get("Content-Type", ""):
            raise AssertionError(
                f"the provider answered {response.status_code} at {url}:\n{response.text[:2000]}")
        page = _Page()
        page.feed(response.text)
        form = next((f for f in page.forms if "prompt" in f["fields"]), None)
        if form is None:
            raise AssertionError(f"no login or consent form at {url}:\n{response.text[:2000]}")
        prompt = form["fields"]["prompt"]
        if prompt == "consent" and not consent:
            url, method, data = urljoin(response.url, page.links["[ Cancel ]"]), "get", None
            refused = True
            continue
        data = dict(form["fields"])
        if prompt == "login":
            data.update(login=login, password=password)
        url, method = urljoin(response.url, form["action"]), form["method"]
    raise AssertionError(f"too many steps at the provider, last at {url}")
