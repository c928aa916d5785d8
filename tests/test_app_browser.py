"""The demo in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright
opens ``python app.py``, uploads an example, runs it and checks the result image.

Playwright uses the system browser (``executable_path=/usr/bin/chromium``); its own browser
downloads are never used. The test skips where Chromium is missing, except in CI
(``CI`` set), where ``.ci/run`` installs it and a skip would hide a broken demo.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import served_app
from PIL import Image


pytestmark = pytest.mark.app
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("SRHUB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXAMPLE = ROOT / "examples" / "cups.png"
#: The folder whose app.py is served: the checkout, or a `srhub space build` folder (.ci/run's Space flavour).
APP_DIR = Path(os.environ.get("SRHUB_APP_DIR", ROOT))


def _need_browser():
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs them, so CI must not skip this test")
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` on a free local port, with the tiny test models; stopped afterwards."""
    _need_browser()
    from test_app import make_tiny_models

    models = make_tiny_models(tmp_path_factory.mktemp("browser-models"))
    log = tmp_path_factory.mktemp("browser-log") / "app.log"
    with served_app(APP_DIR, log, env={"SRHUB_APP_MODELS": str(models)}, timeout=90) as url:
        yield url


def test_upload_run_and_see_the_result(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "app.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            page.goto(server, wait_until="domcontentloaded")
            page.locator("#upscale-input input[type=file]").set_input_files(str(EXAMPLE))
            expect(page.locator("#upscale-input img").first).to_be_visible(timeout=30_000)
            page.locator("#upscale-button").click()
            summary = page.locator("#upscale-summary")
            expect(summary).to_contain_text("160×160 → 320×320", timeout=60_000)
            result = page.locator("#upscale-result img")
            expect(result.first).to_be_visible(timeout=30_000)
            sizes = result.evaluate_all("images => images.map(i => [i.naturalWidth, i.naturalHeight])")
            box = result.first.bounding_box()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert [320, 320] in sizes, f"no 320x320 result image among {sizes}"
    assert box is not None and box["width"] > 50 and box["height"] > 50
    shot = Image.open(screenshot)
    assert shot.format == "PNG" and shot.width >= 1000 and shot.height >= 600
    assert np.asarray(shot.convert("L")).std() > 10  # a rendered page, not a blank one
