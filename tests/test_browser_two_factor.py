"""Two-factor authentication in a real headless Chromium (issue 12): register, set up an
authenticator app from the profile (the test reads the key from the page instead of scanning the QR
code), confirm it with a code, see the recovery codes once, sign out, then sign in with the password
and a code through the second-factor page."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support import strong_password, unique_email
from test_browser import (  # noqa: F401
    WAIT, browser, click_link, fill, greeting, path, replaced, sign_in_through_the_page, submit_button,
)
from test_two_factor import totp


def test_set_up_totp_from_the_profile_then_sign_in_with_a_code(browser, base_url):  # noqa: F811
    email = unique_email("browser-2fa")
    password = strong_password()

    browser.get(base_url + "/register")
    form = browser.find_element(By.ID, "register-form")
    fill(form, email=email, password=password, first_name="Ada", last_name="Lovelace")
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")

    # Profile -> two-factor settings -> set up an authenticator app with the password.
    browser.get(base_url + "/profile")
    click_link(browser, "Manage two-factor authentication")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/profile/two-factor")
    assert browser.find_element(By.ID, "status-totp").text == "off"
    form = browser.find_element(By.ID, "totp-form")
    fill(form, current_password=password)
    submit_button(form).click()
    secret = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "totp-secret"))).text
    assert browser.find_elements(By.CSS_SELECTOR, "#totp-qr svg"), "the QR code is on the page"

    # Confirm with the app's current code: the recovery codes are shown once.
    form = browser.find_element(By.ID, "confirm-form")
    fill(form, code=totp(secret))
    submit_button(form).click()
    codes = WebDriverWait(browser, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#recovery-codes li"))
    assert len(codes) == 10
    click_link(browser, "Continue")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/profile/two-factor")
    assert browser.find_element(By.ID, "status-totp").text == "on"

    # Sign out, then sign in: the password leads to the second-factor page, a code to home.
    submit_button(browser.find_element(By.ID, "signout-form")).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/" and not d.find_elements(By.ID, "greeting"))
    sign_in_through_the_page(browser, base_url, email, password)
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/signin/second-factor")
    assert browser.find_elements(By.ID, "greeting") == [], "no session before the second factor"
    form = browser.find_element(By.ID, "second-factor-form")
    fill(form, code=totp(secret, 1))  # the confirming code's step is used up
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(replaced(form))
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser)
