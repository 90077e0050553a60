"""Sign-in with an OpenID Connect provider against a real one: npm's oidc-provider on this machine
(scripts/oidc_provider.mjs, started by conftest with the session's stack), its own login and
consent pages, the portal's external-sign-in function with the provider's client secret read from
Secrets Manager, and the redemption of an invitation with it. Spoilt ID tokens (another audience, expired, a key the provider never published)
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
from test_invitations import admin, invited  # noqa: F401 (the admin fixture)

JSON = {"Accept": "application/json"}


def trip(base_url: str, provider: str, login: str, consent: bool = True,
         redeem: str | None = None) -> tuple[requests.Session, str]:
    """Begins a trip at the portal (a sign-in, or the redemption of the code `redeem`), signs in at
    the provider (a fresh provider session: no silent second sign-in), and returns the portal's
    session and the callback URL the provider sent."""
    portal = requests.Session()
    if redeem is None:
        begun = portal.get(f"{base_url}/signin/external/{provider}", allow_redirects=False, timeout=30)
    else:
        begun = portal.post(f"{base_url}/redeem/external/{provider}", json={"code": redeem},
                            headers={**JSON, "Origin": base_url}, allow_redirects=False, timeout=30)
    assert begun.status_code == 302, begun.text
    assert "code_challenge_method=S256" in begun.headers["Location"]
    back = sign_in_at_provider(begun.headers["Location"], login, USER_PASSWORD, consent=consent,
                               session=requests.Session())
    assert urlsplit(back).path == f"/signin/external/{provider}/callback", back
    return portal, back


def at_provider(browser, base_url: str) -> None:
    """Waits for the provider's own login page (the portal's pages have login fields too)."""
    WebDriverWait(browser, WAIT).until(lambda d: urlsplit(d.current_url).netloc != urlsplit(base_url).netloc
                                      and d.find_elements(By.CSS_SELECTOR, "input[name=login]"))


def through_the_providers_pages(browser, base_url: str, login: str) -> None:
    """Signs in at the provider's own login page, consents on its consent page (a first visit), and
    waits until the browser is back on the portal's /profile."""
    at_provider(browser, base_url)
    browser.find_element(By.CSS_SELECTOR, "input[name=login]").send_keys(login)
    browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(USER_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: "/interaction/" in d.current_url and not d.find_elements(By.CSS_SELECTOR, "input[name=login]"))
    if urlsplit(browser.current_url).netloc != urlsplit(base_url).netloc:
        browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
    WebDriverWait(browser, WAIT).until(lambda d: d.current_url.startswith(base_url) and path(d) == "/profile")


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
    through_the_providers_pages(browser, base_url, login)
    assert login in browser.page_source


def test_an_invitation_is_redeemed_with_the_provider_onto_a_new_sign_in(stack, admin, base_url):  # noqa: F811
    contact, invitation, code = invited(stack, admin, roles=["Partners"], account_id="acme")
    portal, back = trip(base_url, "example", f"oidc-{uuid.uuid4().hex[:10]}@example.com", redeem=code)
    assert code not in back
    redeemed = portal.get(back, headers=JSON, allow_redirects=False, timeout=30)
    assert redeemed.status_code == 201, redeemed.text
    body = redeemed.json()
    assert (body["contact_id"], body["email"], body["roles"]) == (contact["contact_id"], contact["email"], ["Partners"])
    identities = portal.get(f"{base_url}/profile/identities", headers=JSON, timeout=30).json()["identities"]
    assert [i["provider"] for i in identities] == ["example"]
    # The code is used up.
    again = requests.post(f"{base_url}/redeem/external/example", json={"code": code},
                          headers={**JSON, "Origin": base_url}, allow_redirects=False, timeout=30)
    assert again.status_code == 400 and again.json()["error"] == "invitation_invalid", again.text


def test_a_person_redeems_an_invitation_with_the_provider_in_the_browser(stack, admin, browser, base_url):  # noqa: F811
    contact, _, code = invited(stack, admin, roles=["Partners"])
    browser.get(f"{base_url}/redeem?code={code}")
    browser.find_element(By.ID, "redeem-external-example").click()
    through_the_providers_pages(browser, base_url, f"oidc-{uuid.uuid4().hex[:10]}@example.com")
    assert contact["email"] in browser.page_source
