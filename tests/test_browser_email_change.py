"""A person moving their account to a new address, in a real headless Chromium: register, change the
email on the profile page with the current password, see the old address told and the new one
pending, follow the link emailed to the new address, and sign in with it (the old address no
longer signs in). On failure a screenshot and the page source are saved (the `browser` fixture of
test_browser.py)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support import await_emails, emailed_token, strong_password, unique_email
from test_browser import (  # noqa: F401
    WAIT, browser, fill, greeting, path, sign_in_through_the_page, submit_button,
)


def test_change_email_with_the_password_confirm_from_the_email_and_sign_in_with_it(
        browser, stack, base_url):  # noqa: F811
    old_email = unique_email("browser-move-old")
    new_email = unique_email("browser-move-new")
    password = strong_password()

    browser.get(base_url + "/register")
    form = browser.find_element(By.ID, "register-form")
    fill(form, email=old_email, password=password, first_name="Ada", last_name="Lovelace")
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")

    # Without the current password nothing moves.
    browser.get(base_url + "/profile")
    form = browser.find_element(By.ID, "email-form")
    email_field = form.find_element(By.NAME, "email")
    email_field.clear()
    email_field.send_keys(new_email)
    form.find_element(By.NAME, "current_password").send_keys("not-my-password-at-all")
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(
        EC.presence_of_element_located((By.XPATH, "//p[@class='error'][contains(., 'Current password')]")))
    assert browser.find_elements(By.ID, "profile-pending-email") == []

    form = browser.find_element(By.ID, "email-form")
    email_field = form.find_element(By.NAME, "email")
    email_field.clear()
    email_field.send_keys(new_email)
    form.find_element(By.NAME, "current_password").send_keys(password)
    submit_button(form).click()
    pending = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "profile-pending-email"))).text
    assert new_email in pending, pending
    assert old_email in browser.find_element(By.ID, "profile-email").text

    notice = await_emails(stack, old_email, "A change of your email address was requested")[-1]
    assert new_email in notice["body"], notice
    link = await_emails(stack, new_email, "Confirm your new email address")[-1]
    token = emailed_token(link, base_url, "/confirm-email")

    # Following the link shows a button; pressing it moves the account.
    browser.get(f"{base_url}/confirm-email?token={token}")
    form = WebDriverWait(browser, WAIT).until(EC.presence_of_element_located((By.ID, "token-form")))
    submit_button(form).click()
    message = WebDriverWait(browser, WAIT).until(
        EC.visibility_of_element_located((By.ID, "message"))).text
    assert "confirmed" in message.lower(), message

    # This browser goes on under a new session; the account now has the new address.
    browser.get(base_url + "/profile")
    assert new_email in browser.find_element(By.ID, "profile-email").text
    submit_button(browser.find_element(By.ID, "signout-form")).click()
    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/" and not d.find_elements(By.ID, "greeting"))

    sign_in_through_the_page(browser, base_url, old_email, password)
    assert path(browser) == "/signin", "the old address no longer signs in"
    sign_in_through_the_page(browser, base_url, new_email, password)
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser)
