#!/usr/bin/env python3
"""`make screenshots`: pictures of the portal's pages in headless Chromium at a desktop's width
(1280 px) and a phone's (390 px), written to docs/screenshots/<page>-<width>.png (whole pages).

It starts a local stack of its own on free loopback ports (scripts/stack.py, functions prebuilt),
adds a few contacts and an invitation as the administrator, registers a person, and photographs
the public pages, the person's profile and the staff workspace."""

from __future__ import annotations

import argparse
import os
import sys
import uuid

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the tests' Chromium (tests/browser.py)
import stack as local_stack  # noqa: E402
from browser import Chromium  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

OUT = os.path.join(HERE, "..", "docs", "screenshots")
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
PASSWORD = "amber-lighthouse-orchid-58"


def json_session(base: str, login: str, password: str) -> requests.Session:
    http = requests.Session()
    resp = http.post(base + "/signin", json={"login": login, "password": password}, timeout=60)
    resp.raise_for_status()
    return http


def seed(base: str, admin_password: str) -> dict:
    """Contacts, one invited, and a registered person; the ids the pages need."""
    admin = json_session(base, local_stack.ADMIN_EMAIL, admin_password)
    people = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Katherine", "Johnson"),
              ("Margaret", "Hamilton"), ("Maximiliane", "Oppenheimer")]
    contacts = []
    for first, last in people:
        resp = admin.post(base + "/admin/contacts", timeout=60, json={
            "email": f"{first.lower()}.{last.lower()}@customer-company.example",
            "first_name": first, "last_name": last})
        resp.raise_for_status()
        contacts.append(resp.json())
    invitation = admin.post(base + "/admin/invitations", timeout=60, json={
        "contact_id": contacts[0]["contact_id"], "roles": ["Customers"]})
    invitation.raise_for_status()
    person = f"person-{uuid.uuid4().hex[:8]}@example.com"
    requests.post(base + "/register", timeout=60, json={
        "email": person, "password": PASSWORD, "first_name": "Mary",
        "last_name": "Jackson"}).raise_for_status()
    return {"contact_id": contacts[0]["contact_id"], "person": person,
            "invitation_id": invitation.json()["invitation_id"]}


def photograph(window, url: str | None, name: str) -> None:
    """The page at `url` (None: the page shown now, e.g. a form's answer) at each width."""
    for label, (width, height) in WIDTHS.items():
        window.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
        if url is not None:
            window.get(url)
        WebDriverWait(window, 60).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        full = window.execute_script("return document.documentElement.scrollHeight")
        window.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": max(height, full), "deviceScaleFactor": 1,
            "mobile": width < 600})
        path = os.path.join(OUT, f"{name}-{label}.png")
        window.save_screenshot(path)
        print(f"wrote {os.path.relpath(path)}")


def sign_in(window, base: str, login: str, password: str) -> None:
    window.delete_all_cookies()
    window.get(base + "/signin")
    window.find_element(By.NAME, "login").send_keys(login)
    window.find_element(By.NAME, "password").send_keys(password)
    window.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    WebDriverWait(window, 60).until(lambda d: "/signin" not in d.current_url)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    admin_password = local_stack.DEFAULT_ADMIN_PASSWORD
    stack = local_stack.start_stack(local_stack.free_port(), local_stack.free_port(),
                                    "portal-screenshots", admin_password=admin_password,
                                    prebuilt=True, log_path="/tmp/portal-screenshots.log")
    chromium = Chromium()
    try:
        base = stack.portal_url
        ids = seed(base, admin_password)
        window = chromium.new_window()
        photograph(window, base + "/signin", "signin")
        photograph(window, base + "/register", "register")
        sign_in(window, base, ids["person"], PASSWORD)
        photograph(window, base + "/profile", "profile")
        window.get(base + "/profile/two-factor")  # an authenticator app's set-up: key and QR code
        window.find_element(By.CSS_SELECTOR, "#totp-form [name=current_password]").send_keys(PASSWORD)
        window.find_element(By.CSS_SELECTOR, "#totp-form button[type=submit]").click()
        WebDriverWait(window, 60).until(lambda d: d.find_elements(By.ID, "totp-secret"))
        photograph(window, None, "two-factor-setup")
        sign_in(window, base, local_stack.ADMIN_EMAIL, admin_password)
        photograph(window, base + "/admin/contacts", "admin-contacts")
        photograph(window, f"{base}/admin/contacts?contact_id={ids['contact_id']}", "admin-contact")
        photograph(window, base + "/admin/invitations", "admin-invitations")
        photograph(window, f"{base}/admin/invitations/{ids['invitation_id']}", "admin-invitation")
        window.close()
    finally:
        chromium.quit()
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
