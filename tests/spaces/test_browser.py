"""The Space in a real browser: Debian's chromium driven by Playwright sends text + an image, and the streamed text
reply, a playable audio reply and the first-audio latency appear. A screenshot is kept as a test artifact."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        reason = f"playwright is not installed ({error})"
    else:
        if Path(CHROMIUM).is_file():
            return sync_playwright
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    print(f"SKIPPING the browser test: {reason}")
    pytest.skip(reason)


def test_chat_in_browser(space_url, space_media, tmp_path):
    sync_playwright = _browser_or_skip()
    screenshot = tmp_path / "omni_space.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(space_url, wait_until="load", timeout=60_000)
            box = page.locator("#chat-input")
            box.locator("textarea").fill("What is in this picture?")
            box.locator("input[type=file]").set_input_files(str(space_media["image"]))
            page.wait_for_timeout(1000)  # the upload finishes before submitting
            box.locator("textarea").press("Enter")
            bot = page.locator("#chatbot .message.bot, #chatbot [data-testid='bot']").last
            bot.wait_for(state="attached", timeout=90_000)
            page.locator("#latency", has_text="First audio:").wait_for(timeout=90_000)
            # the reply player (waveform + play button) shows a duration, and its file is a WAV the page can fetch
            page.wait_for_function(
                "() => { const t = document.querySelector('#reply-audio').innerText;"
                " return /\\d:\\d\\d/.test(t) && !/0:00\\s*$/.test(t.split('\\n').filter(x => /:/.test(x)).pop() || '0:00'); }",
                timeout=30_000,
            )
            href = page.locator("#reply-audio a[href*='reply.wav']").first.get_attribute("href")
            wav = page.request.get(href).body()
            page.locator("#reply-audio button[aria-label*='lay']").first.wait_for(state="visible", timeout=10_000)
            user_image = page.locator("#chatbot img").count()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {screenshot}")
    if os.environ.get("OMNI_TEST_ARTIFACTS"):
        target = Path(os.environ["OMNI_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 1000
    assert user_image >= 1  # the uploaded image is shown in the user's turn
    assert screenshot.stat().st_size > 10_000
