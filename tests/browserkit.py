"""Headless Chromium for the browser tests (the app's page, the live MJPEG page): Debian's chromium and
chromedriver driven by selenium. Skipped, with the reason, when a piece is missing; with
HIFIFACE_BROWSER_TESTS=require (CI) a missing piece fails the test instead."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

REQUIRED = os.environ.get("HIFIFACE_BROWSER_TESTS") == "require"
#: As the machine's probe starts it: no background connections (the network is closed), a fresh profile.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1700")


def require(ok: bool, reason: str) -> None:
    if not ok:
        (pytest.fail if REQUIRED else pytest.skip)(reason)


def browser_paths() -> tuple[str | None, str | None]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    return browser, shutil.which("chromedriver")


@contextlib.contextmanager
def chrome(profile: Path) -> Iterator["object"]:
    """A headless Chromium (selenium WebDriver) with its profile in ``profile``; quit on exit."""
    require(importlib.util.find_spec("selenium") is not None, "selenium is not installed (the dev extra has it)")
    browser, chromedriver = browser_paths()
    require(bool(browser and chromedriver),
            "chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield d
    finally:
        d.quit()
