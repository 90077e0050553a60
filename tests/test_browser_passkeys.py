"""Passkeys in a real headless Chromium with Selenium's virtual authenticator (WebAuthn's
addVirtualAuthenticator: CTAP2, internal transport, resident keys, user verification): with an
authenticator app set up, adding a passkey from the profile asks for the password and a current
code (re-authentication: a passkey signs in without either); sign out, sign in with "Sign in with a
passkey" (no name, no password), land signed in; then remove it with the password and a recovery
code. The emailed notices are checked too. On failure a screenshot and the page source are saved
(the `browser` fixture of test_browser.py)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import (
    Protocol, Transport, VirtualAuthenticatorOptions,
)
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support import await_emails, strong_password, unique_email
from test_browser import (  # noqa: F401
    WAIT, browser, click_link, fill, greeting, path, replaced, submit_button,
)
from test_two_factor import totp


def platform_authenticator(driver) -> None:
    """A device's built-in authenticator that keeps passkeys and verifies its user (the screen
    lock), and says yes at once."""
    options = VirtualAuthenticatorOptions(
        protocol=Protocol.CTAP2,
        transport=Transport.INTERNAL,
        has_resident_key=True,
        has_user_verification=True,
        is_user_verified=True,
        is_user_consenting=True,
    )
    driver.add_virtual_authenticator(options)


def start_totp(browser, base_url, password) -> str:
    """Starts setting up an authenticator app and returns the key the page shows."""
    browser.get(base_url + "/profile/two-factor")
    fill(browser.find_element(By.ID, "totp-form"), current_password=password)
    submit_button(browser.find_element(By.ID, "totp-form")).click()
    return WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "totp-secret"))).text


def test_register_a_passkey_sign_in_with_it_and_remove_it(browser, stack, base_url):  # noqa: F811
    email = unique_email("browser-passkey")
    password = strong_password()
    platform_authenticator(browser)

    # Register through the form: signed in.
    browser.get(base_url + "/register")
    form = browser.find_element(By.ID, "register-form")
    fill(form, email=email, password=password, first_name="Ada", last_name="Lovelace")
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")

    # An authenticator app first (the key read from the page), with its recovery codes.
    secret = start_totp(browser, base_url, password)
    form = browser.find_element(By.ID, "confirm-form")
    fill(form, code=totp(secret))
    submit_button(form).click()
    codes = [li.text for li in WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#recovery-codes li"))]

    # Profile -> Passkeys -> Add a passkey: the password alone is not enough, with the app's
    # code the page reloads with it listed.
    browser.get(base_url + "/profile")
    click_link(browser, "Passkeys")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/profile/passkeys")
    assert browser.find_elements(By.ID, "no-passkeys"), "none yet"
    browser.find_element(By.ID, "passkey-name").send_keys("Test laptop")
    browser.find_element(By.ID, "passkey-current-password").send_keys(password)
    browser.find_element(By.ID, "passkey-register-button").click()
    refused = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "passkey-error"))).text
    assert "second factor code" in refused, refused
    assert browser.get_credentials() == [], "nothing was created on the authenticator"
    browser.find_element(By.ID, "passkey-second-factor-code").send_keys(totp(secret, 1))
    browser.find_element(By.ID, "passkey-register-button").click()
    listed = WebDriverWait(browser, WAIT).until(
        EC.presence_of_element_located((By.CSS_SELECTOR, "#passkey-list .passkey-name")))
    assert listed.text == "Test laptop"
    credentials = browser.get_credentials()
    assert len(credentials) == 1 and credentials[0].is_resident_credential, "a discoverable passkey"
    await_emails(stack, email, "A passkey was added to your account")

    # Sign out, then "Sign in with a passkey": no name, no password.
    signout = browser.find_element(By.ID, "signout-form")
    submit_button(signout).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/" and not d.find_elements(By.ID, "greeting"))
    click_link(browser, "Sign in")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/signin")
    button = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "passkey-signin-button")))
    assert button.text == "Sign in with a passkey"
    button.click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser), "signed in by the passkey alone"
    assert browser.get_credentials()[0].sign_count >= 1

    # The passkey page shows it used; removing it needs the password.
    browser.get(base_url + "/profile/passkeys")
    used = browser.find_element(By.CSS_SELECTOR, "#passkey-list .passkey").text
    assert "last used" in used, used
    form = browser.find_element(By.CSS_SELECTOR, "form.passkey-delete")
    fill(form, current_password="not-my-password", second_factor_code=codes[0])
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(replaced(form))
    error = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "form-error"))).text
    assert error, "a wrong password is refused"
    assert browser.find_elements(By.CSS_SELECTOR, "#passkey-list .passkey"), "still there"
    form = browser.find_element(By.CSS_SELECTOR, "form.passkey-delete")
    fill(form, current_password=password, second_factor_code=codes[1])
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/profile/passkeys" and d.find_elements(By.ID, "no-passkeys"))
    assert "Ada" in browser.find_element(By.TAG_NAME, "header").text, "still signed in here"
    await_emails(stack, email, "A passkey was removed from your account")

    # The removed passkey no longer signs in: the page says so and nobody is signed in.
    submit_button(browser.find_element(By.ID, "signout-form")).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/" and not d.find_elements(By.ID, "greeting"))
    browser.get(base_url + "/signin")
    WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "passkey-signin-button"))).click()
    refused = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "passkey-error"))).text
    assert refused, "the refusal is shown"
    assert path(browser) == "/signin"
