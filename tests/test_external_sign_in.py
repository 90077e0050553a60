"""Sign-in with an OpenID Connect provider against a real one: npm's oidc-provider on this machine
(scripts/oidc_provider.mjs, started by conftest with the session's stack), its own login and
consent pages, the portal's external-sign-in function with the provider's client secret read from
Secrets Manager. Spoilt ID tokens (another audience, expired, a key the provider never published)
and a refused consent end in invalid_credentials; a Chromium journey signs in through the
provider's pages."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from oidc_provider import USER_EMAIL, USER_PASSWORD, sign_in_at_provider
from test_browser import WAIT, browser, path  # noqa: F401

JSON = {"Accept": "application/json"}


def trip(base_url: str, provider: str, login: str, consent: bool = True) -> tuple[requests.Session, str]:
    """Begins a trip at the portal, signs in at the provider (a fresh provider session: no silent
    second sign-in), and returns the portal's session and the callback URL the provider sent."""
    portal = requests.Session()
    begun = portal.get(f"{base_url}/signin/external/{provider}", allow_redirects=False, timeout=30)
    assert begun.status_code == 302, begun.text
    assert "code_challenge_method=S256" in begun.headers["Location"]
    back = sign_in_at_provider(begun.headers["Location"], login, USER_PASSWORD, consent=consent,
                               session=requests.Session())
    assert urlsplit(back).path == f"/signin/external/{provider}/callback", back
    return portal, back


def test_a_new_person_signs_in_with_the_provider_and_again_to_the_same_account(stack, base_url):
    login = f"oidc-{uuid.uuid4().hex[:10]}@example.com"
    portal, back = trip(base_url, "example", login)
    entered = portal.get(back, headers=JSON, allow_redirects=False, timeout=30)
    assert entered.status_code == 200, entered.text
    assert entered.json()["email"] == login
    assert portal.cookies.get("portal_session")
    identities = portal.get(f"{base_url}/profile/identities", headers=JSON, timeout=30).json()
    assert [i["provider"] for i in identities["identities"]] == ["example"]
    assert {"id": "example", "name": "Example ID"} in identities["providers"]
    # A replayed callback is refused, and the account is not signed in again by it.
    replayed = portal.get(back, headers=JSON, allow_redirects=False, timeout=30)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_credentials"
    # The same person again: the same account.
    again, back = trip(base_url, "example", login)
    entered_again = again.get(back, headers=JSON, allow_redirects=False, timeout=30)
    assert entered_again.json()["contact_id"] == entered.json()["contact_id"]


def test_spoilt_tokens_and_a_refused_consent_are_invalid_credentials(stack, base_url):
    for provider in ("wrong-aud", "expired", "bad-sig"):
        portal, back = trip(base_url, provider, USER_EMAIL)
        refused = portal.get(back, headers=JSON, allow_redirects=False, timeout=30)
        assert refused.status_code == 401, (provider, refused.status_code, refused.text)
        assert refused.json()["error"] == "invalid_credentials", provider
        assert not portal.cookies.get("portal_session"), provider
    portal, back = trip(base_url, "example", USER_EMAIL, consent=False)
    assert "error=access_denied" in back
    refused = portal.get(back, headers=JSON, allow_redirects=False, timeout=30)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_credentials"


def test_a_person_signs_in_with_the_provider_in_the_browser(stack, browser, base_url):  # noqa: F811
    login = f"oidc-{uuid.uuid4().hex[:10]}@example.com"
    browser.get(base_url + "/signin")
    browser.find_element(By.ID, "external-example").click()
    # The provider's own login page, then its consent page.
    form = WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=login]"))
    form[0].send_keys(login)
    browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(USER_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit], form [type=submit]").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: "/interaction/" in d.current_url and not d.find_elements(By.CSS_SELECTOR, "input[name=login]"))
    if urlsplit(browser.current_url).netloc != urlsplit(base_url).netloc:
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit], form [type=submit]").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.startswith(base_url) and path(d) == "/profile")
    assert login in browser.page_source
