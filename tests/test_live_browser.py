"""The live MJPEG output in a real browser: headless Chromium (as in test_app_browser.py) opens the page the http
output serves and shows frames that change. The stream is a looping clip of numbered flat frames through a stand-in
processor (the model is not what is tested here).

Skipped, with the reason, without selenium or the browser; with HIFIFACE_BROWSER_TESTS=require (CI) a missing piece
fails instead.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from browserkit import chrome

pytest.importorskip("cv2")
pytest.importorskip("imageio_ffmpeg")

from test_live import Recorder, file_capture, numbered_frames  # noqa: E402
from videokit import make_clip  # noqa: E402


@pytest.fixture
def stream_url(tmp_path):
    from hififace.live.loop import run_live
    from hififace.live.outputs import MjpegServer

    clip = make_clip(tmp_path / "n12.mp4", numbered_frames(12, size=(160, 96)), rate="10", audio=False)
    server = MjpegServer("127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=run_live, args=(file_capture(clip, loop=True), Recorder(), [server]),
                              kwargs={"should_stop": stop.is_set})
    thread.start()
    try:
        yield server.url
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


@pytest.fixture
def driver(tmp_path):
    with chrome(tmp_path / "chromium") as d:
        yield d


def _shot(element) -> np.ndarray:
    import cv2

    png = np.frombuffer(element.screenshot_as_png, np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)


def test_the_live_page_shows_moving_frames(stream_url, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(stream_url)
    assert "AI-generated" in driver.find_element(By.TAG_NAME, "p").text
    img = driver.find_element(By.ID, "live")
    WebDriverWait(driver, 60, poll_frequency=0.2).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", img) == 160, "waiting for the first frame")
    levels = []
    for _ in range(4):  # the flat frames' grey level tells which frame the page shows
        levels.append(int(round(float(np.median(_shot(img))))))
        time.sleep(0.4)
    assert len(set(levels)) >= 2, levels
