"""The AI panel on Orthanc Explorer's study page, in a real headless Chromium against a real node.

Debian's ``chromium`` and ``chromium-driver`` are driven by Selenium (installed by
``scripts/setup.sh --dev``). The browser has no network besides loopback: background networking,
component updates and sync are off. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from scripts.orthanc_process import PASSWORD, USER, OrthancNode

from .conftest import running_node
from .studies import thyroid_nm

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DISCLAIMER = "AI result \u2014 adjunct to interpretation, not a substitute"
INJECTION = '<img src=x onerror="window.aiInjected=1">'  # a SeriesDescription (LO, 64 chars max)
WAIT = 60  # seconds for the page, the panel, and a re-run


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium Python package")
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make test`, which installs them "
                    "(scripts/setup.sh --dev: Debian chromium chromium-driver, requirements-dev.txt)")


@pytest.fixture(scope="module")
def explorer_node(tmp_path_factory: pytest.TempPathFactory):
    """A node of its own: the re-run below must not race other tests' studies."""
    with running_node(tmp_path_factory.mktemp("explorer"), "explorer") as node:
        yield node


@pytest.fixture(scope="module")
def thyroid_study(explorer_node: OrthancNode, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """A thyroid study sent with storescu and processed: (Orthanc study id, AI state)."""
    path, study_uid = thyroid_nm(tmp_path_factory.mktemp("explorer-send"), "explorer", seed=5150)
    sent = explorer_node.storescu([path])
    assert sent.returncode == 0, sent.stderr
    study_id = explorer_node.study_id(study_uid)
    state = explorer_node.wait_state(study_id, ["done", "failed"])
    assert state["state"] == "done", state
    return study_id, state


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """Headless Debian Chromium through Debian's chromedriver (no Selenium Manager, no downloads)."""
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", f"--user-data-dir={profile}", "--window-size=1400,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})  # JavaScript errors
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def _open_study(driver, node: OrthancNode, study_id: str):
    """Open the study page with basic auth in the URL; return the panel once the study page shows it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    host = f"127.0.0.1:{node.http_port}"
    driver.get("about:blank")  # a fresh load of the app, not a hash change in the previous one
    driver.get(f"http://{USER}:{PASSWORD}@{host}/app/explorer.html#study?uuid={study_id}")

    def shown(d):
        found = d.find_elements(By.CSS_SELECTOR, f'#ai-panel[data-study="{study_id}"]')
        active = d.execute_script("return window.$ && $.mobile && $.mobile.activePage "
                                  "&& $.mobile.activePage.attr('id')")
        return found[0] if found and active == "study" and found[0].is_displayed() else None

    return WebDriverWait(driver, WAIT).until(shown, message="the AI panel did not appear on the study page")


def _wait_state(driver, states: set[str], message: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(
        lambda d: d.find_element(By.ID, "ai-panel").get_attribute("data-state") in states, message=message)


def test_study_page_shows_the_ai_panel(browser, explorer_node, thyroid_study):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    study_id, state = thyroid_study
    panel = _open_study(browser, explorer_node, study_id)
    _wait_state(browser, {"done"}, "the panel never showed the state 'done'")
    text = panel.text
    assert panel.find_element(By.CSS_SELECTOR, ".ai-state").get_attribute("textContent") == "done"
    result = state["results"][0]
    assert f"{result['pipeline']} \u00b7 variant {result['variant']}" in text
    for model in result["models"]:
        assert f"{model['name']} {model['version']}" in text
    assert "Right lobe share" in text and "Left lobe share" in text and "Thyroid-to-background" in text
    shares = result["findings"]["measurements"]
    assert f"{shares['right_count_share']['value']:.1f} %" in text
    nodules = panel.find_elements(By.CSS_SELECTOR, "li.ai-nodule")
    assert len(nodules) == len(result["findings"]["nodules"])
    assert DISCLAIMER in text
    assert panel.find_element(By.ID, "ai-rerun").is_enabled()  # authenticated: the button is there

    # The overlay: a link to its instance page and a preview that the browser decoded.
    sc = result["outputs"]["sc"]["instance_id"]
    link = panel.find_element(By.CSS_SELECTOR, "a.ai-overlay")
    assert link.get_attribute("href").endswith(f"#instance?uuid={sc}")
    image = link.find_element(By.TAG_NAME, "img")
    assert image.get_attribute("src").endswith(f"/instances/{sc}/preview")
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0,
        message="the overlay preview did not load")
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "explorer-study.png"))
    errors = [e["message"] for e in browser.get_log("browser") if "plugins/explorer.js" in e["message"]]
    assert errors == [], errors

    link.click()
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return $.mobile.activePage.attr('id')") == "instance"
        and sc in d.current_url, message="the overlay link did not open the instance page")


def test_rerun_button_shows_the_state_change(browser, explorer_node, thyroid_study):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    study_id, _ = thyroid_study
    before = explorer_node.ai_state(study_id)
    panel = _open_study(browser, explorer_node, study_id)
    _wait_state(browser, {"done"}, "the panel never showed the state 'done'")
    # Record every state the panel shows: a re-run with unchanged models takes well under a second.
    browser.execute_script("""
        var panel = document.getElementById('ai-panel');
        window.aiStates = [panel.getAttribute('data-state')];
        new MutationObserver(function () {
          var state = panel.getAttribute('data-state');
          if (window.aiStates[window.aiStates.length - 1] !== state) window.aiStates.push(state);
        }).observe(panel, {attributes: true, attributeFilter: ['data-state']});
    """)
    panel.find_element(By.ID, "ai-rerun").click()
    WebDriverWait(browser, WAIT, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "ai-panel").get_attribute("data-state") in {"queued", "running"},
        message="the panel did not show the re-run as queued or running")
    assert browser.save_screenshot(str(ARTIFACTS / "explorer-study-rerunning.png"))
    WebDriverWait(browser, WAIT).until(
        lambda d: d.execute_script("return window.aiStates.length") >= 3
        and d.find_element(By.ID, "ai-panel").get_attribute("data-state") == "done",
        message="the panel did not go through a re-run back to 'done'")
    seen = browser.execute_script("return window.aiStates")
    assert seen[0] == "done" and seen[-1] == "done", seen
    assert set(seen[1:-1]) <= {"queued", "running"} and seen[1:-1], seen
    panel = browser.find_element(By.ID, "ai-panel")
    assert panel.find_element(By.ID, "ai-rerun").is_enabled()
    assert panel.get_attribute("data-updated") != before["updated"]
    assert "(re-run)" in panel.find_element(By.CSS_SELECTOR, ".ai-updated").text
    assert browser.save_screenshot(str(ARTIFACTS / "explorer-study-rerun.png"))

    # The node did re-run it (a new start), and unchanged models duplicated nothing.
    after = explorer_node.ai_state(study_id)
    assert after["state"] == "done" and after["trigger"] == "rerun" and after["started"] != before["started"]
    assert len(after["results"]) == len(before["results"])
    assert len(explorer_node.json(f"/studies/{study_id}/series")) == 4


def test_dicom_text_is_shown_as_text(browser, explorer_node, thyroid_study, tmp_path):
    """A skipped study's reason quotes its SeriesDescription: markup there must stay text."""
    from selenium.webdriver.common.by import By

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SeriesDescription = INJECTION
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["explorer-injection", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["explorer-injection", "series"])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=["explorer-injection", "instance"])
    path = tmp_path / "injection.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert explorer_node.storescu([path]).returncode == 0
    study_id = explorer_node.study_id(ds.StudyInstanceUID)
    assert explorer_node.wait_state(study_id, ["skipped"])["state"] == "skipped"

    # A hash typed by hand, from the thyroid study to this one, keeps the same jQuery Mobile page
    # (no pagebeforeshow): the panel must still describe the study the Explorer shows.
    _open_study(browser, explorer_node, thyroid_study[0])
    shown = browser.execute_async_script("""
        var done = arguments[arguments.length - 1];
        location.hash = arguments[0];
        setTimeout(function () {
          done([window.currentUuid, $('#ai-panel').attr('data-study')]);
        }, 500);
    """, f"#study?uuid={study_id}")
    assert shown[0] == shown[1], shown

    panel = _open_study(browser, explorer_node, study_id)
    _wait_state(browser, {"skipped"}, "the panel never showed the state 'skipped'")
    reason = panel.find_element(By.CSS_SELECTOR, ".ai-reason")
    assert INJECTION in reason.text
    assert reason.find_elements(By.XPATH, ".//*") == []  # no element made from the text
    assert panel.find_elements(By.TAG_NAME, "img") == []
    assert browser.execute_script("return window.aiInjected") is None
    assert browser.save_screenshot(str(ARTIFACTS / "explorer-study-skipped.png"))
