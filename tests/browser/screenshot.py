"""Screenshots of a running web console at 1280x800, as the browser tests take them (the
README's picture comes from `make demo KEEP=1`):

    .venv/bin/python tests/browser/screenshot.py 'http://127.0.0.1:PORT/#token=TOKEN' OUT_DIR

Writes OUT_DIR/live.png (once every step has a sparkline line, at most 60 s later) and
OUT_DIR/problems.png. Not a test: pytest collects test_*.py only."""

from __future__ import annotations

import sys
from pathlib import Path

from browser_session import start_chromium
from selenium.webdriver.common.by import By

LINES = "#live-flows tr[data-step]"


def main(url: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    browser = start_chromium()
    try:
        browser.driver.get(url)
        browser.wait(lambda d: d.find_elements(By.CSS_SELECTOR, LINES), "the Live tab's rows", timeout=30)
        every_step_drawn = (
            "const rows = document.querySelectorAll(arguments[0]);"
            "return [...rows].every((row) => row.querySelector('.sparkline polyline.rps'));"
        )
        browser.wait(lambda d: browser.script(every_step_drawn, LINES), "the sparklines' lines", timeout=60)
        browser.driver.save_screenshot(str(out / "live.png"))
        browser.driver.find_element(By.ID, "tab-problems").click()
        browser.driver.save_screenshot(str(out / "problems.png"))
    finally:
        browser.driver.quit()
    print(f"wrote {out / 'live.png'} and {out / 'problems.png'}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], Path(sys.argv[2]))
