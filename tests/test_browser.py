"""A person's journey in a real headless Chromium: register from the home page, sign out, sign in
again. On failure a screenshot and the page source are saved to a temporary directory."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import accessibility
from support import strong_password, unique_email

WAIT = 60  # seconds; a function may be started lazily on its first request


def open_browser(request, chromium):
    """A fresh browser profile in the worker's Chromium (conftest's `chromium`), for one test; on
    the test's failure, its screenshot, page source and URL are saved to a temporary directory.
    Every page it loads is audited by axe-core (tests/accessibility.py): a test that passed fails
    at teardown if a page it visited broke a WCAG 2.x A or AA rule."""
    window = chromium.new_window()
    window.set_page_load_timeout(WAIT)
    found = []
    try:
        yield window
    finally:
        try:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.passed:
                found = accessibility.findings(window)
            if report is not None and report.failed:
                save_failure_artefacts(window)
        finally:
            window.close()
    if found:
        raise AssertionError("accessibility (axe-core, WCAG 2.x A and AA):\n"
                             + accessibility.describe(found))


def save_failure_artefacts(window) -> None:
    out = Path(tempfile.mkdtemp(prefix="portal-browser-failure-"))
    try:
        window.save_screenshot(str(out / "screenshot.png"))
        (out / "page.html").write_text(window.page_source)
        (out / "url.txt").write_text(window.current_url)
    except Exception as e:  # noqa: BLE001 - the test's own failure matters more
        (out / "capture-error.txt").write_text(repr(e))
    print(f"\nbrowser failure artefacts in {out}")


@pytest.fixture
def browser(request, chromium):
    yield from open_browser(request, chromium)


def path(driver) -> str:
    return urlsplit(driver.current_url).path


def click_link(driver, text: str) -> None:
    WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable((By.LINK_TEXT, text))).click()


SUBMIT = ".//*[self::button[not(@type) or @type='submit'] or self::input[@type='submit']]"


def submit_button(form):
    return form.find_element(By.XPATH, SUBMIT)


def greeting(driver) -> str:
    return WebDriverWait(driver, WAIT).until(
        EC.visibility_of_element_located((By.ID, "greeting"))
    ).text


def fill(form, **values) -> None:
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)


def replaced(element):
    """A wait condition: `element`'s page has been replaced (the form was submitted and the next
    page loaded). Chromium, asked about a node while its document is being swapped, sometimes
    answers "Node with given id does not belong to the document" instead of a stale reference:
    that is the same fact, seen mid-navigation."""
    def check(_driver) -> bool:
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as err:
            if "does not belong to the document" in str(err):
                return True
            raise
    return check


def sign_in_through_the_page(driver, base_url: str, login: str, password: str) -> None:
    """Home page -> Sign in -> the sign-in form, submitted; waits until the form is gone."""
    driver.get(base_url + "/")
    click_link(driver, "Sign in")
    WebDriverWait(driver, WAIT).until(lambda d: path(d) == "/signin")
    form = driver.find_element(By.ID, "signin-form")
    fill(form, login=login, password=password)
    submit_button(form).click()
    WebDriverWait(driver, WAIT).until(replaced(form))


def test_register_sign_out_and_sign_in_again(browser, base_url):
    email = unique_email("browser")
    password = strong_password()

    browser.get(base_url + "/")
    assert browser.find_elements(By.ID, "greeting") == [], "signed out: no greeting"
    click_link(browser, "Register")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/register")

    form = browser.find_element(By.ID, "register-form")
    form.find_element(By.NAME, "email").send_keys(email)
    form.find_element(By.NAME, "password").send_keys(password)
    form.find_element(By.NAME, "first_name").send_keys("Ada")
    form.find_element(By.NAME, "last_name").send_keys("Lovelace")
    submit_button(form).click()

    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser)

    signout = browser.find_element(By.ID, "signout-form")
    button = submit_button(signout)
    assert "Sign out" in (button.text or button.get_attribute("value") or "")
    button.click()

    WebDriverWait(browser, WAIT).until(
        lambda d: path(d) == "/" and not d.find_elements(By.ID, "greeting")
    )
    click_link(browser, "Sign in")
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/signin")

    form = browser.find_element(By.ID, "signin-form")
    form.find_element(By.NAME, "login").send_keys(email)
    form.find_element(By.NAME, "password").send_keys(password)
    submit_button(form).click()

    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    assert "Ada" in greeting(browser)

    # The session cookie is out of reach of page scripts.
    assert "portal_session" not in browser.execute_script("return document.cookie")


def test_wrong_password_shows_the_form_again(browser, base_url):
    browser.get(base_url + "/signin")
    form = browser.find_element(By.ID, "signin-form")
    form.find_element(By.NAME, "login").send_keys(unique_email("nobody"))
    form.find_element(By.NAME, "password").send_keys(strong_password())
    submit_button(form).click()
    WebDriverWait(browser, WAIT).until(replaced(form))
    assert path(browser) == "/signin"
    again = browser.find_element(By.ID, "signin-form")
    assert again.find_element(By.NAME, "password").get_attribute("value") == ""
    assert browser.find_elements(By.ID, "greeting") == []
