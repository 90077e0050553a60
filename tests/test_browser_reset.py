"""A person who forgot the password, in a real headless Chromium: register, sign out, follow
"Forgot your password?" from the sign-in page, open the emailed link, choose a new password and sign
in with it through the sign-in page. On failure a screenshot and the page source are saved (the
`browser` fixture of test_browser.py)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support import await_emails, emailed_token, strong_password, unique_email
from test_browser import (  # noqa: F401
    WAIT, browser, click_link, fill, greeting, path, sign_in_through_the_page, submit_button,
)


def test_forgot_password_email_link_new_password_and_sign_in(browser, stack, base_url):  # noqa: F811
    email = unique_email("browser-reset")
    old_password = strong_password()
    new_password = strong_password()

    # Register through the form, then sign out.
    browser.get(base_url + "/register")
    form = browser.find_element(By.ID, "register-form")
    fill(form, email=email, password=old_password, first_name="Ada", last_name="Lovelace")
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser)
    submit_button(browser.find_element(By.ID, "signout-form")).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/" and not d.find_elements(By.ID, "greeting"))

    # Sign-in page -> "Forgot your password?" -> the request form.
    click_link(browser, "Sign in")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/signin")
    click_link(browser, "Forgot your password?")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/forgot-password")
    form = browser.find_element(By.ID, "forgot-form")
    fill(form, email=email)
    submit_button(form).click()
    message = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "message"))).text
    assert "link" in message.lower(), message

    # The emailed link opens the form for the new password.
    mail = await_emails(stack, email, "Reset your password")[-1]
    token = emailed_token(mail, base_url, "/reset-password")
    browser.get(f"{base_url}/reset-password?token={token}")
    form = WebDriverWait(browser, WAIT).until(
        EC.presence_of_element_located((By.ID, "token-form")))
    fill(form, new_password=new_password)
    submit_button(form).click()
    message = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "message"))).text
    assert "password" in message.lower() and "changed" in message.lower(), message
    assert browser.find_elements(By.ID, "greeting") == [], "a reset does not sign in by itself"
    browser.get(base_url + "/")
    assert browser.find_elements(By.ID, "greeting") == [], "a reset does not sign in by itself"

    # The old password no longer works; the new one does.
    sign_in_through_the_page(browser, base_url, email, old_password)
    assert path(browser) == "/signin"
    assert browser.find_elements(By.ID, "greeting") == []

    sign_in_through_the_page(browser, base_url, email, new_password)
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser)
