"""The Dynamics 365 invitation journey in real headless Chromium: an administrator signs in, opens
Contacts, creates a contact, selects it and creates an invitation on its page; then, in a fresh
browser profile, the contact opens the emailed link, sees whom it is for, chooses a password and
lands signed in on the profile with the invitation's web role. On failure a screenshot and the page
source are saved (the `browser` fixture of test_browser.py, reused for both browsers)."""

from __future__ import annotations

import re
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    INVITATION_SUBJECT,
    await_emails,
    emailed_invitation_code,
    strong_password,
    unique_email,
)
from test_browser import (  # noqa: F401
    WAIT, browser, click_link, fill, greeting, open_browser, path, sign_in_through_the_page,
    submit_button,
)


@pytest.fixture
def contact_browser(request, chromium):
    """A second browser with a fresh profile of its own, as test_browser's `browser`."""
    yield from open_browser(request, chromium)


def text_of(driver, element_id: str) -> str:
    return WebDriverWait(driver, WAIT).until(
        EC.visibility_of_element_located((By.ID, element_id))).text


def dd_after(driver, term: str) -> str:
    """The text of the <dd> that follows the <dt> `term`."""
    return driver.find_element(
        By.XPATH, f"//dt[normalize-space()='{term}']/following-sibling::dd[1]").text


def test_admin_invites_a_contact_who_redeems_in_the_browser(browser, contact_browser, stack,  # noqa: F811
                                                             base_url):
    admin = browser
    email = unique_email("browser-invitee")

    # The administrator signs in through the sign-in page.
    sign_in_through_the_page(admin, base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    WebDriverWait(admin, WAIT).until(lambda d: path(d) == "/")
    greeting(admin)

    # Contacts -> New contact.
    click_link(admin, "Contacts")
    WebDriverWait(admin, WAIT).until(lambda d: path(d) == "/admin/contacts")
    form = admin.find_element(By.ID, "contact-form")
    fill(form, email=email, first_name="Grace", last_name="Hopper")
    submit_button(form).click()
    WebDriverWait(admin, WAIT).until(
        lambda d: path(d) == "/admin/contacts" and "contact_id=" in d.current_url)
    assert text_of(admin, "contact-email") == email

    # Back to the list, select the new contact (as in Sales -> Contacts -> the contact).
    click_link(admin, "All contacts")
    WebDriverWait(admin, WAIT).until(lambda d: "contact_id=" not in d.current_url)
    open_link = WebDriverWait(admin, WAIT).until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, f'#contacts a[data-email="{email}"]')))
    open_link.click()
    WebDriverWait(admin, WAIT).until(lambda d: "contact_id=" in d.current_url)
    assert text_of(admin, "contact-email") == email

    # Create Invitation on the contact's page, with a web role.
    form = admin.find_element(By.ID, "invitation-form")
    Select(form.find_element(By.NAME, "type")).select_by_value("single")
    fill(form, roles="Customers", expires_in_days="5")
    submit_button(form).click()
    WebDriverWait(admin, WAIT).until(
        lambda d: re.fullmatch(r"/admin/invitations/[\w-]+", path(d)))
    invitation_page = admin.current_url
    assert text_of(admin, "invitation-status") == "active"
    assert text_of(admin, "invitation-delivery") in ("pending", "sent")
    assert admin.find_elements(By.ID, "resend-form") and admin.find_elements(By.ID, "revoke-form")
    assert "Grace Hopper" in admin.page_source

    # The invitation email goes out; the administrator's page shows it sent.
    mail = await_emails(stack, email, INVITATION_SUBJECT)[0]
    code = emailed_invitation_code(mail, base_url)
    link = f"{base_url}/redeem?code={code}"
    assert code not in admin.page_source
    deadline = time.monotonic() + 30
    while text_of(admin, "invitation-delivery") != "sent" and time.monotonic() < deadline:
        time.sleep(0.5)
        admin.refresh()
    assert text_of(admin, "invitation-delivery") == "sent"

    # The contact, in a fresh browser, opens the emailed link and sees whom it is for.
    contact = contact_browser
    contact.get(link)
    WebDriverWait(contact, WAIT).until(lambda d: path(d) == "/redeem")
    assert "Grace Hopper" in text_of(contact, "invitation-for")
    assert email in text_of(contact, "invitation-for")
    form = contact.find_element(By.ID, "redeem-form")
    assert not form.find_element(By.NAME, "existing_account").is_selected()
    password = strong_password()
    fill(form, password=password)
    submit_button(form).click()

    # Signed in, on the profile, with the invitation's web role and a confirmed email.
    WebDriverWait(contact, WAIT).until(lambda d: path(d) == "/profile")
    assert email in text_of(contact, "profile-email")
    assert "confirmed" in text_of(contact, "profile-email")
    assert not contact.find_elements(By.ID, "email-unconfirmed")
    assert dd_after(contact, "Web roles") == "Customers"
    assert contact.find_elements(By.ID, "signout-form"), "signed in"
    assert contact.find_element(By.LINK_TEXT, "Grace")
    assert "portal_session" not in contact.execute_script("return document.cookie")

    # The home page greets the new portal user.
    contact.get(base_url + "/")
    assert "Grace" in greeting(contact)

    # The administrator sees the redemption.
    admin.get(invitation_page)
    assert text_of(admin, "invitation-status") == "redeemed"
    assert "127.0.0.1" in text_of(admin, "redemptions")
