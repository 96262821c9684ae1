"""The demo page at / in a real headless chromium (Debian's, driven by Selenium through
/usr/bin/chromedriver): type a text, press the button, see one bar per label."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serve_support import running_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
LABELS = {"World", "Sports", "Business", "Sci/Tech"}

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_demo_page_shows_label_probabilities_as_bars(browser, served_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_server(served_checkpoint, tmp_path) as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: "checkpoint" in d.find_element(By.ID, "meta").text)  # model info
        box = browser.find_element(By.ID, "text")
        box.clear()
        box.send_keys("The striker scored twice as the home side won the cup final")
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .row")) == 4)
        rows = browser.find_elements(By.CSS_SELECTOR, "#bars .row")
        labels = [row.find_element(By.CLASS_NAME, "label").text for row in rows]
        values = [float(row.find_element(By.CLASS_NAME, "value").text) for row in rows]
        widths = [row.find_element(By.CLASS_NAME, "bar").value_of_css_property("width")
                  for row in rows]
        assert set(labels) == LABELS
        assert values == sorted(values, reverse=True)
        assert sum(values) == pytest.approx(1.0, abs=0.01)
        assert float(widths[0].removesuffix("px")) > float(widths[-1].removesuffix("px"))
        assert browser.find_element(By.ID, "error").text == ""

        box.clear()  # an empty text: the server's one-line 4xx message shows on the page
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda d: d.find_element(By.ID, "error").text != "")
        assert "texts[0] is empty" in browser.find_element(By.ID, "error").text
        assert browser.find_elements(By.CSS_SELECTOR, "#bars .row") == []
