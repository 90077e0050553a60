"""A group invitation from the contacts page in real headless Chromium: an administrator finds two
contacts, ticks both, fills the group form and sends it; the invitation's page lists each
contact's delivery, which reaches "sent" for both, and each contact got the one group code."""

from __future__ import annotations

import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support import (
    ADMIN_EMAIL, ADMIN_PASSWORD, INVITATION_SUBJECT, Portal, await_emails, describe,
    emailed_invitation_code,
)
from test_browser import (  # noqa: F401
    WAIT, browser, click_link, path, replaced, sign_in_through_the_page, submit_button,
)


def test_admin_ticks_two_contacts_and_sends_them_one_group_invitation(browser, stack,  # noqa: F811
                                                                       base_url):
    run = uuid.uuid4().hex[:8]
    api = Portal(base_url)
    assert api.signin(ADMIN_EMAIL, ADMIN_PASSWORD).status_code == 200
    members = []
    for i in (1, 2):
        body = {"email": f"group{run}-{i}@example.com", "first_name": "Team",
                "last_name": f"Group{run}"}
        resp = api.post_json("/admin/contacts", body)
        assert resp.status_code == 201, describe(resp)
        members.append(resp.json())

    admin = browser
    sign_in_through_the_page(admin, base_url, ADMIN_EMAIL, ADMIN_PASSWORD)
    WebDriverWait(admin, WAIT).until(lambda d: path(d) == "/")
    click_link(admin, "Contacts")
    WebDriverWait(admin, WAIT).until(lambda d: path(d) == "/admin/contacts")
    search = admin.find_element(By.ID, "search-form")
    search.find_element(By.ID, "q").send_keys(f"group{run}")
    submit_button(search).click()
    WebDriverWait(admin, WAIT).until(replaced(search))

    for member in members:
        box = admin.find_element(By.CSS_SELECTOR, f"input[aria-label='Invite {member['email']}']")
        box.click()
        assert box.is_selected()
    form = admin.find_element(By.ID, "group-invitation-form")
    form.find_element(By.ID, "group_roles").send_keys("Members")
    submit_button(form).click()
    WebDriverWait(admin, WAIT).until(replaced(form))
    WebDriverWait(admin, WAIT).until(lambda d: path(d).startswith("/admin/invitations/"))
    invitation_page = admin.current_url

    def every_delivery_sent(driver) -> bool:
        driver.get(invitation_page)
        states = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#deliveries .delivery-status")]
        return len(states) == 2 and set(states) == {"sent"}

    # The fan-out is expanded off the outbox stream; the emails go out at 1 a second.
    WebDriverWait(admin, 60, poll_frequency=1).until(every_delivery_sent)
    listed = admin.find_element(By.ID, "deliveries").text
    for member in members:
        assert member["email"] in listed

    codes = set()
    for member in members:
        emails = await_emails(stack, member["email"], INVITATION_SUBJECT)
        assert len(emails) == 1, emails
        codes.add(emailed_invitation_code(emails[0], stack.portal_url))
    assert len(codes) == 1, "both contacts got the one group code"
