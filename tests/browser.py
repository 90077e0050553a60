"""One headless Chromium per test process, and each test's browser as a fresh profile in it.

Launching Chromium for every browser test cost seconds each; here the `chromium` fixture (conftest)
launches one per pytest worker, and each `browser` is a window in a browser context of its own
(what an incognito window is: no cookie, storage, cache or passkey of another context), disposed
of after its test. Browser contexts are made through the browser's own DevTools endpoint:
chromedriver's CDP command reaches only the current page, which may not make them."""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import urllib.request
from pathlib import Path

import accessibility

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """A headless Chromium driven by chromedriver; new_window() gives a fresh profile in it."""

    def __init__(self):
        import websocket
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        if not Path(CHROMEDRIVER).exists() or not Path(CHROMIUM).exists():
            raise RuntimeError("Chromium is missing: apt-get install -y --no-install-recommends "
                               "chromium chromium-driver")
        self.profile = tempfile.mkdtemp(prefix="portal-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,1024",
            f"--user-data-dir={self.profile}",
        ):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.home = self.current = self.driver.current_window_handle  # kept open: the session
        address = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        with urllib.request.urlopen(f"http://{address}/json/version", timeout=30) as r:
            url = json.load(r)["webSocketDebuggerUrl"]
        # Without an Origin header: Chromium refuses DevTools connections from other origins.
        self._devtools = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self._ids = itertools.count(1)

    def devtools(self, method: str, **params) -> dict:
        """A command to the browser itself (not to a page) over its DevTools protocol."""
        ident = next(self._ids)
        self._devtools.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:  # events are not subscribed to; skip anything else
            message = json.loads(self._devtools.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def switch_to(self, handle: str) -> None:
        if self.current != handle:
            self.driver.switch_to.window(handle)
            self.current = handle

    def new_window(self) -> Window:
        context = self.devtools("Target.createBrowserContext")["browserContextId"]
        target = self.devtools("Target.createTarget", url="about:blank",
                               browserContextId=context)["targetId"]
        self.switch_to(target)  # chromedriver's window handle is the target id
        accessibility.install(self.driver)  # axe audits every page the window loads
        return Window(self, context, target)

    def quit(self) -> None:
        try:
            self._devtools.close()
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class Window:
    """A test's browser: a window of the shared Chromium in a browser context of its own. It is
    used as a WebDriver (its attributes are the driver's), and makes its window the driver's
    current one first, so that two of them (an administrator and an invitee) take turns."""

    def __init__(self, chromium: Chromium, context: str, handle: str):
        self._chromium, self._context, self._handle = chromium, context, handle

    def __getattr__(self, name):
        self._chromium.switch_to(self._handle)
        return getattr(self._chromium.driver, name)

    def close(self) -> None:
        """Close the window and drop its browser context with everything it stored."""
        chromium, driver = self._chromium, self._chromium.driver
        try:
            chromium.switch_to(self._handle)
            if getattr(driver, "_authenticator_id", None):  # a passkey test's virtual authenticator
                driver.remove_virtual_authenticator()
            driver.close()
        finally:
            chromium.current = None
            chromium.switch_to(chromium.home)
            chromium.devtools("Target.disposeBrowserContext", browserContextId=self._context)
