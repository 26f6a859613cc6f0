"""`hififace app` in a real browser: the command is started on a free localhost port and headless Chromium (Debian's
`chromium` + `chromium-driver`) drives the page through Selenium: upload two photos, press Swap, a labelled result
appears; upload a photo without a face, the error line appears; a short video is swapped too.

Screenshots are kept in $HIFIFACE_TEST_ARTIFACTS (default: a pytest temporary folder, printed with -rP).
Skipped, with the reason, without gradio, selenium or the browser; with HIFIFACE_BROWSER_TESTS=require (CI) a
missing piece fails instead.
"""
from __future__ import annotations

import importlib.util
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browserkit import chrome, require
from inferkit import tiny_model_dir

PHOTOS = Path(__file__).parent / "data" / "photos"
START_TIMEOUT = 120  # seconds for the app to come up (imports gradio and torch on a busy 2-core machine)
STEP_TIMEOUT = 90  # seconds for an upload or a swap to show


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("HIFIFACE_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require(importlib.util.find_spec("gradio") is not None, "gradio is not installed (pip install 'hififace[app]')")
    tmp = tmp_path_factory.mktemp("app")
    weights = tiny_model_dir(tmp / "tiny", random_note=True)  # random weights: the page must say so
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp / "home"), "HIFIFACE_HOME": str(tmp / "home" / "hififace"),
           "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    proc = subprocess.Popen([sys.executable, "-m", "hififace.cli.main", "app", "--weights", str(weights),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    url, log, deadline = f"http://127.0.0.1:{port}", [], time.monotonic() + START_TIMEOUT
    try:
        while not any(f"hififace app: {url}" in line for line in log):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the app did not start:\n" + "".join(log))
            try:
                log.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def driver(app_url, tmp_path_factory):
    with chrome(tmp_path_factory.mktemp("chromium")) as d:
        yield d


def _wait(d, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, STEP_TIMEOUT, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def _text(d, selector: str) -> str:
    from selenium.webdriver.common.by import By

    found = d.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""


def _upload(d, component: str, *paths: Path) -> None:
    from selenium.webdriver.common.by import By

    d.find_element(By.CSS_SELECTOR, f"#{component} input[type=file]").send_keys("\n".join(str(p) for p in paths))
    _wait(d, lambda d: all(p.stem in _text(d, f"#{component}") for p in paths), f"the upload of {component}")


def _open(d, url: str) -> None:
    from selenium.webdriver.common.by import By

    d.get(url)
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#swap"), "the page")


def test_swap_in_the_browser(app_url, driver, artifacts):
    from selenium.webdriver.common.by import By

    url, _ = app_url
    _open(driver, url)
    assert "only with consent" in _text(driver, "#consent").lower()
    assert "random weights" in _text(driver, "#random-weights").lower()
    _upload(driver, "sources", PHOTOS / "astronaut.png")
    _upload(driver, "target", PHOTOS / "grace_hopper.jpg")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#faces img"), "the numbered faces")
    driver.find_element(By.CSS_SELECTOR, "#swap").click()
    img = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#result-image img"), "the result image")[0]
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(artifacts / "app_swap.png"))
    print(f"screenshot: {artifacts / 'app_swap.png'}")
    status = _text(driver, "#status")
    assert status.startswith("done: grace_hopper_swapped_random_weights.jpg: 1 of 1 face(s) swapped"), status
    assert "grace_hopper_swapped_random_weights" in _text(driver, "#download")
    # what the page shows is the labelled file: fetch it as the browser does
    shown = artifacts / "app_result.jpg"
    shown.write_bytes(urllib.request.urlopen(img.get_attribute("src"), timeout=30).read())
    from hififace.media.labels import read_label

    label = " ".join(f"{k}={v}" for k, v in read_label(shown).items())
    assert "AI-Generated=true" in label and "hififace:weights=random" in label
    with Image.open(shown) as result, Image.open(PHOTOS / "grace_hopper.jpg") as target:
        assert result.size == target.size


def test_no_face_error_in_the_browser(app_url, driver, artifacts, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = app_url
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((200, 240, 3), 128, np.uint8)).save(flat)
    _open(driver, url)
    _upload(driver, "sources", PHOTOS / "astronaut.png")
    _upload(driver, "target", flat)
    driver.find_element(By.CSS_SELECTOR, "#swap").click()
    _wait(driver, lambda d: "error" in _text(d, "#status"), "the error line")
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(artifacts / "app_no_face.png"))
    print(f"screenshot: {artifacts / 'app_no_face.png'}")
    status = _text(driver, "#status")
    assert status.startswith("error: flat.png: no face found"), status
    assert str(tmp_path) not in status and "Traceback" not in status
    assert not driver.find_elements(By.CSS_SELECTOR, "#result-image img")


def test_video_swap_in_the_browser(app_url, driver, artifacts, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from selenium.webdriver.common.by import By

    from videokit import face_frames, make_clip

    url, _ = app_url
    clip = make_clip(tmp_path / "clip.mp4", face_frames(4), audio=False)
    _open(driver, url)
    _upload(driver, "sources", PHOTOS / "astronaut.png")
    _upload(driver, "target", clip)
    assert not driver.find_elements(By.CSS_SELECTOR, "#quality-plot img")  # hidden until a report is asked for
    driver.find_element(By.CSS_SELECTOR, "#quality-report input[type=checkbox]").click()
    driver.find_element(By.CSS_SELECTOR, "#swap").click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#result-video video"), "the result video")
    status = _text(driver, "#status")
    assert status.startswith("done: clip_swapped_random_weights.mp4: 4 frames, the face swapped in 4"), status
    assert "clip_swapped_random_weights" in _text(driver, "#download")
    assert not driver.find_elements(By.CSS_SELECTOR, "#result-image img")  # the photo preview is cleared
    # the quality report: its plot, one line, and the JSON and PNG to download
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#quality-plot img"), "the quality plot")
    summary = _text(driver, "#quality-summary")
    assert summary.startswith("quality: 4 face(s) measured, mean identity similarity") and "frame(s) flagged" in summary
    files = _text(driver, "#quality-files").replace("\n", "")  # each name is drawn as stem, then extension
    assert "clip_swapped_random_weights_quality.json" in files and "clip_swapped_random_weights_quality.png" in files


def test_verify_tab_in_the_browser(app_url, driver):
    """The Verify tab hides the swap controls and shows the file check (a tab switch in the browser)."""
    from selenium.webdriver.common.by import By

    url, _ = app_url
    _open(driver, url)
    assert driver.find_element(By.CSS_SELECTOR, "#swap").is_displayed()
    tab = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == "Verify"]
    assert tab, "no Verify tab"
    tab[0].click()
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#verify-file input[type=file]"), "the Verify tab")
    assert not driver.find_elements(By.CSS_SELECTOR, "#swap") or not driver.find_element(
        By.CSS_SELECTOR, "#swap").is_displayed()
