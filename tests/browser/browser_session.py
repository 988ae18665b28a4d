"""The browser of the web console's tests: Debian's /usr/bin/chromium, headless, driven by
/usr/bin/chromedriver through Selenium (deploy/console/ensure-chromium.sh installs both).
Nothing is downloaded: the driver's path is given, so Selenium Manager is never run (it is
made to fail the test if it ever were), and the browser's own traffic goes nowhere."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager
from selenium.webdriver.support.ui import WebDriverWait

BROWSER = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
WIDTH, HEIGHT = 1280, 800  # the README's picture
# No traffic of the browser's own: the page is all it loads, and it must work offline. Even
# with the flags below, Debian's Chromium asks Google for the time, extension updates, autofill
# hints and accounts (seen in its --log-net-log); a proxy on a closed loopback port takes all of
# that (no DNS, nothing leaves the machine) while loopback itself, the page, is never proxied.
QUIET = [
    "--headless=new", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
    "--metrics-recording-only", "--disable-breakpad", "--hide-scrollbars", "--no-pings",
    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--disable-features=AutofillServerCommunication,NetworkTimeServiceQuerying,Translate,OptimizationHints",
    "--proxy-server=http://127.0.0.1:9",
]  # fmt: skip


@dataclass
class Loaded:
    """One response the page received (from Chrome's performance log and the DevTools protocol)."""

    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: str | None  # None: no longer in the browser when asked


@dataclass
class Browser:
    driver: webdriver.Chrome
    loaded: list[Loaded] = field(default_factory=list)
    _pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    def open(self, url: str) -> None:
        self.drain()  # a response's body is gone once its page is
        self.driver.get("about:blank")  # a load, not a same-page jump to a new #fragment
        self.driver.get(url)

    def wait(self, condition: Callable[[webdriver.Chrome], Any], what: str, timeout: float = 20) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition, f"waiting for {what}")

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def drain(self) -> list[Loaded]:
        """Every response received since the last drain, with its body."""
        fresh: list[Loaded] = []
        for entry in self.driver.get_log("performance"):
            message = orjson.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                self._pending.setdefault(params["requestId"], {})["method"] = params["request"]["method"]
            elif message["method"] == "Network.responseReceived":
                self._pending.setdefault(params["requestId"], {})["response"] = params["response"]
            elif message["method"] == "Network.loadingFinished":
                request = self._pending.pop(params["requestId"], {})
                response = request.get("response")
                if response is None or response["url"].startswith("data:"):
                    continue
                fresh.append(Loaded(request.get("method", "GET"), response["url"], int(response["status"]),
                                    {k: str(v) for k, v in response["headers"].items()},
                                    self._body(params["requestId"])))  # fmt: skip
        self.loaded.extend(fresh)
        return fresh

    def _body(self, request_id: str) -> str | None:
        """None once the browser dropped it (a page left without a drain): the secrets test
        drains before and after its own steps and wants every body of those."""
        try:
            answer = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": request_id})
        except WebDriverException:
            return None
        body = answer["body"]
        return base64.b64decode(body).decode("utf-8", "replace") if answer.get("base64Encoded") else body


def start_chromium() -> Browser:
    """A headless Chromium at a 1280x800 viewport; AssertionError when it is not installed."""
    for binary in (BROWSER, DRIVER):
        if not os.access(binary, os.X_OK):
            raise AssertionError(
                f"{binary} is missing: run deploy/console/ensure-chromium.sh (Debian's chromium and "
                "chromium-driver packages); the browser tests never skip"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in QUIET:
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    original = SeleniumManager.binary_paths
    SeleniumManager.binary_paths = _refuse_selenium_manager  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    finally:
        SeleniumManager.binary_paths = original  # type: ignore[method-assign]
    # The viewport itself at 1280x800 (a headless window's size includes no toolbar anyway).
    viewport = {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", viewport)
    print(f"chromium started in {time.monotonic() - started:.1f} s")
    return Browser(driver)


def _refuse_selenium_manager(*args: object, **kwargs: object) -> dict[str, str]:
    raise AssertionError("Selenium Manager would look for (and download) a driver: the system one is given")
