"""Every page at a desktop's and a phone's width, in headless Chromium: the staff pages are a
full-width workspace whose tables keep each email on one line at 1280 px; at 390 px no page
scrolls sideways (tables scroll inside their own box); every page passes axe-core's WCAG 2.x A and
AA rules; and the sign-in form and the contacts page work with the keyboard alone, with the focus
visible."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import WebDriverWait

import accessibility
from support import ADMIN_EMAIL, ADMIN_PASSWORD, Portal, strong_password, unique_email
from test_browser import (  # noqa: F401
    WAIT, browser, fill, greeting, path, sign_in_through_the_page, submit_button,
)

DESKTOP, PHONE = (1280, 900), (390, 844)
PUBLIC_PAGES = ["/", "/signin", "/register", "/forgot-password", "/redeem"]
PERSON_PAGES = ["/profile", "/profile/two-factor", "/profile/passkeys", "/profile/security", "/profile/export",
                "/profile/delete", "/signin/email-code"]


def viewport(driver, size: tuple[int, int]) -> None:
    """The page's viewport exactly `size` CSS pixels (a phone's honours the viewport meta tag)."""
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def visit(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, WAIT).until(
        lambda d: d.execute_script("return document.readyState") == "complete")


def sideways_overflow(driver) -> int:
    """How many CSS pixels the page is wider than its viewport (0: it does not scroll sideways)."""
    return driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")


def wrapped_emails(driver) -> list[str]:
    """The table cells holding one email address whose text takes more than one line."""
    return driver.execute_script("""
        var wrapped = [];
        document.querySelectorAll("td").forEach(function (cell) {
          var text = cell.textContent.trim();
          if (!/^[^\\s@]+@[^\\s@]+$/.test(text)) return;
          var range = document.createRange();
          range.selectNodeContents(cell);
          var lines = new Set(Array.from(range.getClientRects()).map(function (r) {
            return Math.round(r.top); }));
          if (lines.size > 1) wrapped.push(text);
        });
        return wrapped;""")


def check_pages(driver, base_url: str, pages: list[str]) -> list[str]:
    """Each page at both widths; the problems found, one line each."""
    problems = []
    for size in (DESKTOP, PHONE):
        viewport(driver, size)
        for page in pages:
            visit(driver, base_url + page)
            where = f"{page} at {size[0]} px"
            if (extra := sideways_overflow(driver)) > 0:
                problems.append(f"{where}: the page scrolls sideways by {extra} px")
            if size == DESKTOP and (cells := wrapped_emails(driver)):
                problems.append(f"{where}: emails wrapped over lines: {cells}")
            if found := accessibility.audit(driver):
                problems.append(f"{where}: " + accessibility.describe(
                    [{"page": page, "violations": found}]))
    return problems


@pytest.fixture
def staff_data(stack, base_url):
    """Contacts with long addresses, one of them invited (an invitation page to look at)."""
    admin = Portal(base_url)
    assert admin.signin(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    contacts = []
    for i in range(3):
        resp = admin.post_json("/admin/contacts", {
            "email": unique_email(f"a-rather-long-mailbox-name-{i}"), "first_name": "Maximiliane",
            "last_name": f"Oppenheimer-Wittgenstein {i}", "phone": "+44 20 7946 0000"})
        assert resp.status_code == 201, resp.text
        contacts.append(resp.json())
    resp = admin.post_json("/admin/invitations", {
        "contact_id": contacts[0]["contact_id"], "type": "single", "roles": ["Customers", "Partners"]})
    assert resp.status_code == 201, resp.text
    return contacts[0], resp.json()["invitation_id"]


def test_every_page_fits_a_desktop_and_a_phone_and_passes_axe(browser, staff_data, base_url):  # noqa: F811
    contact, invitation_id = staff_data
    contact_id = contact["contact_id"]
    problems = check_pages(browser, base_url, PUBLIC_PAGES)

    # A person's pages, signed in.
    person = Portal(base_url)
    email, password = unique_email("workspace-person"), strong_password()
    assert person.register(email=email, password=password)[1].status_code == 201
    viewport(browser, DESKTOP)
    sign_in_through_the_page(browser, base_url, email, password)
    greeting(browser)
    problems += check_pages(browser, base_url, PERSON_PAGES)

    # The staff workspace, as the administrator.
    browser.delete_all_cookies()
    viewport(browser, DESKTOP)
    sign_in_through_the_page(browser, base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    greeting(browser)
    problems += check_pages(browser, base_url, [
        "/admin/contacts", f"/admin/contacts?contact_id={contact_id}", "/admin/invitations",
        f"/admin/invitations/{invitation_id}", "/admin/imports", f"/admin/contacts/{contact_id}", "/admin/audit", "/admin/settings"])
    assert not problems, "\n".join(problems)

    # Filters and the search box in one row: their controls end on one line at 1280 px.
    viewport(browser, DESKTOP)
    for page, form in (("/admin/invitations", "#filter-form"), ("/admin/contacts", "#search-form")):
        visit(browser, base_url + page)
        bottoms = browser.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0] + ' select, ' + arguments[0]"
            " + ' input:not([type=hidden]), ' + arguments[0] + ' button'))"
            ".map(e => Math.round(e.getBoundingClientRect().bottom));", form)
        assert len(bottoms) >= 2 and max(bottoms) - min(bottoms) <= 2, (page, bottoms)

    # The workspace uses the width: at 1280 px its main column is far wider than the person's card.
    viewport(browser, DESKTOP)
    visit(browser, base_url + "/admin/invitations")
    workspace = browser.find_element(By.TAG_NAME, "main").size["width"]
    visit(browser, base_url + "/profile")
    card = browser.find_element(By.TAG_NAME, "main").size["width"]
    assert workspace >= 1100 and card <= 700, (workspace, card)


def focused(driver):
    return driver.switch_to.active_element


def tab_to(driver, matches, limit: int = 40):
    """Presses Tab until the focused element satisfies `matches`; it must show a visible focus."""
    for _ in range(limit):
        focused(driver).send_keys(Keys.TAB)
        element = focused(driver)
        if matches(element):
            outline = driver.execute_script(
                "var s = getComputedStyle(arguments[0]);"
                "return [s.outlineStyle, parseFloat(s.outlineWidth)];", element)
            assert outline[0] != "none" and outline[1] >= 2, f"focus not visible: {outline}"
            return element
    raise AssertionError("Tab never reached the element")


def test_sign_in_and_open_a_contact_with_the_keyboard_alone(browser, staff_data, base_url):  # noqa: F811
    contact, _ = staff_data
    contact_id, email = contact["contact_id"], contact["email"]
    viewport(browser, DESKTOP)
    visit(browser, base_url + "/signin")
    login = tab_to(browser, lambda e: e.get_attribute("name") == "login")
    login.send_keys(ADMIN_EMAIL)
    tab_to(browser, lambda e: e.get_attribute("name") == "password").send_keys(ADMIN_PASSWORD)
    submit = tab_to(browser, lambda e: e.tag_name == "button" and e.get_attribute("type") == "submit"
                    and e.find_element(By.XPATH, "./ancestor::form").get_attribute("id") == "signin-form")
    submit.send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == "/")
    greeting(browser)

    visit(browser, base_url + "/admin/contacts")
    search = tab_to(browser, lambda e: e.get_attribute("id") == "q")
    search.send_keys(email + Keys.ENTER)  # this test's contact alone (others share the prefix)
    WebDriverWait(browser, WAIT).until(lambda d: "q=" in d.current_url)
    opened = tab_to(browser, lambda e: e.tag_name == "a" and e.text == "Open")
    opened.send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT).until(lambda d: f"contact_id={contact_id}" in d.current_url)
    assert browser.find_element(By.ID, "contact-email").text == email


def test_revoking_an_invitation_asks_first(browser, staff_data, base_url):  # noqa: F811
    _, invitation_id = staff_data
    viewport(browser, DESKTOP)
    sign_in_through_the_page(browser, base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    greeting(browser)
    visit(browser, f"{base_url}/admin/invitations/{invitation_id}")
    revoke = browser.find_element(By.CSS_SELECTOR, "#revoke-form button")
    assert not revoke.is_displayed(), "the revoking button shows only once asked for"
    browser.find_element(By.CSS_SELECTOR, "#revoke summary").click()
    WebDriverWait(browser, WAIT).until(lambda d: revoke.is_displayed())
    revoke.click()
    visit(browser, f"{base_url}/admin/invitations/{invitation_id}")
    assert browser.find_element(By.ID, "invitation-status").text == "revoked"
    assert not browser.find_elements(By.ID, "revoke-form"), "nothing left to revoke"


def test_staff_disable_and_enable_an_account_from_its_page(browser, stack, base_url):  # noqa: F811
    """The contact's page -> its account -> Disable sign-in, confirmed: the person's sign-in is
    refused and the page shows it, with the entry in its recent activity; then Enable."""
    person = Portal(base_url)
    email, password = unique_email("staff-page"), strong_password()
    body, resp = person.register(email=email, password=password)
    assert resp.status_code == 201, resp.text
    contact_id = resp.json()["contact_id"]
    viewport(browser, DESKTOP)
    sign_in_through_the_page(browser, base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    greeting(browser)
    visit(browser, f"{base_url}/admin/contacts?contact_id={contact_id}")
    browser.find_element(By.ID, "account-link").click()
    WebDriverWait(browser, WAIT).until(lambda d: path(d) == f"/admin/contacts/{contact_id}")
    assert "enabled" in browser.find_element(By.ID, "account-login").text

    browser.find_element(By.CSS_SELECTOR, "#action-disable summary").click()
    form = browser.find_element(By.ID, "disable-form")
    submit_button(form).click()
    # The answer replaces the page: an element found on the old one may be gone when it is read.
    reloading = WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    reloading.until(lambda d: "disabled" in d.find_element(By.ID, "account-login").text)
    kinds = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#activity .audit-kind")]
    assert kinds[0] == "account disabled", kinds
    assert Portal(base_url).signin(email, password).status_code == 401

    browser.find_element(By.CSS_SELECTOR, "#action-enable summary").click()
    submit_button(browser.find_element(By.ID, "enable-form")).click()
    reloading.until(lambda d: "enabled" in d.find_element(By.ID, "account-login").text)
    assert Portal(base_url).signin(email, password).status_code == 200
    assert accessibility.audit(browser) == []
