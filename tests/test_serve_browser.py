"""The page of ``attnsr serve`` in a real headless Chromium (Selenium): load it, upload an
image, wait for the result, move the before/after slider, zoom, download one result and
all of them (zip), and check the download against ``attnsr.upscale`` of the same file.

Needs Debian's ``chromium`` and ``chromium-driver`` (the README's test command installs
them); skipped, saying so, only when no Chromium can be found. Set
``ATTNSR_SERVE_SCREENSHOT=docs/figures/serve.png`` to keep the page's screenshot.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e .[serve])")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e .[dev])")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

import attnsr  # noqa: E402
from attnsr.cli.demo_cmd import sample_image  # noqa: E402
from attnsr.models.registry import get_pretrained  # noqa: E402
from attnsr.serve.app import create_app  # noqa: E402
from attnsr.serve.config import ServeConfig  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("no Chromium/chromedriver found (Debian: apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

pytestmark = pytest.mark.slow
MODEL = "attnsr-x2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread; yields its URL."""
    app = create_app(ServeConfig(work_dir=tmp_path_factory.mktemp("serve")))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not srv.started and time.monotonic() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1200,1000", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(DRIVER))
    driver.execute_cdp_cmd("Page.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two downscaled crops of a real photo (matplotlib's sample): worth upscaling."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    with Image.open(sample_image()) as img:
        for name, box, size in (("hopper.png", (150, 60, 390, 240), (120, 90)),
                                ("hopper-tie.png", (100, 380, 420, 600), (80, 55))):
            img.convert("RGB").crop(box).resize(size, Image.BICUBIC).save(folder / name)
            paths.append(folder / name)
    return paths


def wait_for_file(folder: Path, name: str, timeout: float = 30.0) -> Path:
    path = folder / name
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.is_file() and not list(folder.glob("*.crdownload")) and path.stat().st_size:
            return path
        time.sleep(0.1)
    raise AssertionError(f"{name} was not downloaded; found {os.listdir(folder)}")


def unlabelled_controls(driver: Any) -> list[str]:
    return driver.execute_script("""
        return [...document.querySelectorAll('input, select, button, a.button, progress')]
          .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !el.textContent.trim())
          .map(el => el.outerHTML.slice(0, 80));""")


def clip_percent(driver: Any) -> float:
    clip = driver.find_element(By.ID, "after").value_of_css_property("clip-path")
    return float(clip.split("inset(")[1].split()[3].rstrip("%)"))  # inset(0 0 0 X%)


def test_page_upscales_compares_and_downloads(server: str, browser: Any, downloads: Path,
                                              photos: list[Path]) -> None:
    photo = photos[0]
    browser.get(server)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) > 1)
    assert unlabelled_controls(browser) == []
    tag = get_pretrained(MODEL)
    assert tag is not None
    Select(browser.find_element(By.ID, "model")).select_by_value(tag.name)
    Select(browser.find_element(By.ID, "format")).select_by_value("png")
    browser.find_element(By.ID, "files").send_keys("\n".join(map(str, photos)))  # two at once
    browser.find_element(By.ID, "start").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".item.done")) == 2)
    item = browser.find_elements(By.CSS_SELECTOR, ".item")[0]
    assert "Done: 240×180" in item.find_element(By.CLASS_NAME, "status").text
    assert item.find_element(By.TAG_NAME, "progress").get_attribute("value") == "1"
    item.find_element(By.CLASS_NAME, "show").click()  # compare this one (either came first)
    wait.until(lambda d: d.execute_script("return document.getElementById('after')"
                                          ".naturalWidth") == 240)

    # the slider: keyboard on the range input, then dragging the divider line
    split = browser.find_element(By.ID, "split")
    split.send_keys(*[Keys.ARROW_LEFT] * 15)
    assert split.get_attribute("value") == "35" and abs(clip_percent(browser) - 35) < 0.5
    viewer = browser.find_element(By.ID, "viewer")
    ActionChains(browser).drag_and_drop_by_offset(
        browser.find_element(By.ID, "divider"), viewer.size["width"] // 5, 0).perform()
    assert 50 <= clip_percent(browser) <= 60
    # zoom: both layers are one stage, so before and after stay aligned
    viewer.send_keys("+", "+")
    rects = browser.execute_script("return ['before', 'after'].map(id => document"
                                   ".getElementById(id).getBoundingClientRect().toJSON())")
    assert rects[0] == rects[1] and rects[1]["width"] > viewer.size["width"] * 1.5
    viewer.send_keys("0")
    _screenshot(browser)

    item.find_element(By.CLASS_NAME, "download").click()
    got = wait_for_file(downloads, "hopper_x2.png")
    with Image.open(got) as img:
        assert img.size == (240, 180)
        sr = np.asarray(img.convert("RGB")).astype(int)
    want = np.asarray(attnsr.upscale(photo, model=MODEL)).astype(int)
    assert np.abs(sr - want).max() <= 1

    browser.find_element(By.ID, "download-all").click()
    archive = wait_for_file(downloads, "attnsr-results.zip")
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["hopper_x2.png", "hopper-tie_x2.png"]
        assert zf.read("hopper_x2.png") == got.read_bytes()


def test_page_fits_a_phone_screen(server: str, browser: Any) -> None:
    browser.set_window_size(390, 844)
    browser.get(server)
    WebDriverWait(browser, 30).until(
        lambda d: len(Select(d.find_element(By.ID, "model")).options) > 1)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{overflow} px wider than a 390 px screen"
    browser.set_window_size(1200, 1000)


def _screenshot(browser: Any) -> None:
    """The whole page with its result (Chromium's full-page capture), kept where
    $ATTNSR_SERVE_SCREENSHOT says."""
    target = os.environ.get("ATTNSR_SERVE_SCREENSHOT")
    if not target:
        return
    browser.execute_script("window.scrollTo(0, 0)")
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_bytes(base64.b64decode(shot["data"]))
