"""The Space in a real browser: Debian's chromium driven by Playwright sends text + an image, and the streamed text
reply, a playable audio reply and the first-audio latency appear. A screenshot is kept as a test artifact."""

import contextlib
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


@contextlib.contextmanager
def _page(url: str, args: list[str]):
    """A chromium page on the Space (closed afterwards)."""
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="load", timeout=60_000)
            yield page
        finally:
            browser.close()


def _keep(screenshot: Path) -> None:
    print(f"screenshot: {screenshot}")
    if os.environ.get("OMNI_TEST_ARTIFACTS"):
        target = Path(os.environ["OMNI_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / screenshot.name)


def test_chat_in_browser(space_url, space_media, tmp_path):
    screenshot = tmp_path / "omni_space.png"
    with _page(space_url, ARGS) as page:
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
    _keep(screenshot)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 1000
    assert user_image >= 1  # the uploaded image is shown in the user's turn
    assert screenshot.stat().st_size > 10_000


def test_live_voice_in_browser(space_url, tmp_path):
    """The live tab with Chromium's fake microphone playing an espeak-ng question (then silence, looped): the
    server VAD ends the turn, the spoken reply plays, and the latency after the end of speech is shown."""
    import re

    import numpy as np
    import soundfile
    from scipy.signal import resample_poly

    from omni_hf.testing.media import espeak_speech

    speech, rate = espeak_speech("What is the weather like in Paris today?")
    speech = resample_poly(speech, 48000, rate)
    wav = tmp_path / "question.wav"
    soundfile.write(wav, np.concatenate([np.zeros(24000), speech, np.zeros(48000 * 4)]), 48000, subtype="PCM_16")
    args = [*ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
    screenshot = tmp_path / "omni_space_live.png"
    with _page(space_url, args) as page:
        page.get_by_role("tab", name="Live voice").click()
        page.locator("#live-start").click()
        page.locator("#live-turns li").first.wait_for(timeout=120_000)
        row = page.locator("#live-turns li").first.inner_text()
        page.wait_for_function("() => window.omniLive.audioSamples > 2400", timeout=60_000)
        played = page.evaluate("window.omniLive.audioSamples")
        page.screenshot(path=str(screenshot), full_page=True)
        page.locator("#live-stop").click()
    _keep(screenshot)
    latency = float(re.search(r"Turn 1: first audio ([\d.]+) s after the end of speech", row).group(1))
    assert 0.5 <= latency < 60  # it includes the VAD's 500 ms silence wait
    assert played > 2400  # reply audio reached the page's player (pcm16 at 24 kHz)
