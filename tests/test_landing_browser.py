"""The landing page in a real browser: config-derived text is shown as text and
never runs. Headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
via Selenium, against a real exporter process polling the simulator.

The page also carries a Content-Security-Policy that blocks inline script, so
``window.pwned`` staying undefined alone would not prove the escaping: the test
also requires the markup to appear as literal text and no injected element to
exist in the DOM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.simulator import Fleet, SimulatorServer
from tests.conftest import require_tool
from tests.harness import running_exporter, simulator_config, wait_for, write_config

ACTOR = 2001492652
ACTOR_NAME = "<script>window.pwned=1</script>"
MACHINE_NAME = '<img src=x onerror="window.pwned=2">'
# The config file's name is shown on the page too.
CONFIG_NAME = '<i id="injected">config.yaml'
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium = require_tool("chromium")
    chromedriver = require_tool("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_landing_page_shows_hostile_names_as_text(
    tmp_path: Path, simulator: SimulatorServer, fleet: Fleet, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    machine = fleet.machines(ACTOR)[0]
    config = write_config(
        tmp_path / CONFIG_NAME,
        simulator_config(
            simulator.url,
            [
                {
                    "id": ACTOR,
                    "name": ACTOR_NAME,
                    "machines": [{"id": machine.id, "name": MACHINE_NAME}],
                }
            ],
        ),
    )
    with running_exporter(config) as exporter:
        wait_for(exporter.ready, timeout=20, what="first poll")
        browser.get(exporter.url + "/")
        browser.save_screenshot(str(tmp_path / "landing.png"))

        assert browser.title == "Nayax EV Exporter"
        rows = browser.find_elements(By.CSS_SELECTOR, "#targets tbody tr")
        cells = [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        # One actor-wide target and one machine target, default 24h window.
        assert len(cells) == 2, cells
        assert {row[0] for row in cells} == {str(ACTOR)}
        assert {row[1] for row in cells} == {ACTOR_NAME}
        assert {row[2] for row in cells} == {"(actor-wide)", MACHINE_NAME}
        assert {row[4] for row in cells} == {"up"}
        assert CONFIG_NAME in browser.find_element(By.TAG_NAME, "body").text
        # The state colours reach the browser: the page's policy admits its inline style.
        state = browser.find_element(By.CSS_SELECTOR, "#targets tr.up td.state")
        assert state.value_of_css_property("background-color") == "rgba(200, 230, 201, 1)"
        failing = browser.find_element(By.ID, "failing")
        assert (failing.tag_name, failing.text) == ("p", "No target is failing.")

        assert browser.execute_script("return typeof window.pwned") == "undefined"
        injected = browser.execute_script(
            "return document.querySelectorAll('script, img, i, #injected').length"
        )
        assert injected == 0
