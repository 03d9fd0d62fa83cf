"""`rewas ui` in a real browser: Debian's headless Chromium, driven by Selenium, against a server started as a user
starts it. Upload, prompt, a muted range and a drawn stroke, a take; an oversized and a non-video upload each give
a message on the page while the server keeps serving. The page's screenshot is kept in build/test-artifacts/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from avcheck import streams

from rewas import samples
from rewas.audio import load_audio, write_wav

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="chromium + chromium-driver are not installed (`make test` installs them)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`rewas ui` on the embedded model, uploads limited to 1 MB; -> its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("ui") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    cmd = [sys.executable, "-m", "rewas", "ui", "--port", str(port), "--max-upload-mb", "1", "--queue", "2"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"rewas ui did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    workdirs = list(Path(tempfile.gettempdir()).glob(f"rewas-studio-{proc.pid}-*"))
    assert len(workdirs) == 1
    yield url, proc
    proc.terminate()  # SIGTERM stops it as Ctrl+C does
    try:
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not workdirs[0].exists()  # every file it wrote is gone


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    args = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1700")
    for arg in args:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, what, timeout: float = 120.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: what(d))


def _status(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "rewas-status").text


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    clear = driver.find_elements(By.CSS_SELECTOR, "#rewas-video button[aria-label='Clear']")
    if clear:  # a video is loaded: remove it so the upload field comes back
        clear[0].click()
    field = _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#rewas-video input[type=file]"))[0]
    field.send_keys(str(path))


def _set_number(driver, elem_id: str, value: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def test_studio_in_a_browser(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, proc = server
    video = tmp_path / "ball.mp4"
    samples.write_video(video, samples.bouncing_ball_frames(bounce_period=0.5), duration=4.0, fps=25)
    big = tmp_path / "big.mp4"  # over the 1 MB limit
    big.write_bytes(os.urandom(1_500_000))
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are my notes, not a video\n" * 10)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    browser.get(url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rewas-video input[type=file]"))

    # an oversized upload: a message on the page, and the page still works afterwards
    _upload(browser, big)
    _wait(browser, lambda d: "exceed the maximum" in _page_text(d).lower(), 30)
    assert proc.poll() is None

    # a file that is not a video: a readable line, no traceback
    browser.get(url)
    _upload(browser, not_video)
    _wait(browser, lambda d: "⚠️ notes.mp4: not a readable media file" in _status(d), 60)
    assert "Traceback" not in _page_text(browser)
    browser.save_screenshot(str(ARTIFACTS / "studio_bad_upload.png"))
    assert proc.poll() is None

    # the real thing: upload, prompt, mute 1.0-2.5 s, draw a stroke at 3-3.6 s, generate with few steps
    browser.get(url)
    _upload(browser, video)
    _wait(browser, lambda d: "The curve is φ's prediction" in _status(d))
    browser.find_element(By.CSS_SELECTOR, "#rewas-prompt textarea").send_keys("wood knocks")
    _set_number(browser, "rewas-start", 1.0)
    _set_number(browser, "rewas-end", 2.5)
    browser.find_element(By.ID, "rewas-apply").click()
    _wait(browser, lambda d: "1 edit(s)" in _status(d))

    canvas = browser.find_element(By.CSS_SELECTOR, "#rewas-curve canvas")
    width, height = canvas.size["width"], canvas.size["height"]
    inner = width - 46 - 12  # the editor's plot area (curve.js PAD)

    def x_at(seconds: float) -> int:  # offset from the canvas's centre
        return round(46 + inner * seconds / 4.0 - width / 2)

    chain = ActionChains(browser).move_to_element_with_offset(canvas, x_at(3.0), 0).click_and_hold()
    for s in np.linspace(3.05, 3.6, 8):
        chain = chain.move_to_element_with_offset(canvas, x_at(float(s)), -height // 4)
    chain.release().perform()
    _wait(browser, lambda d: "2 edit(s)" in _status(d))
    assert "draw" in canvas.find_element(By.XPATH, "..").text

    _set_number(browser, "rewas-steps", 10)
    browser.find_element(By.ID, "rewas-generate").click()
    _wait(browser, lambda d: "Take 1" in _status(d), 240)
    src = _wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#rewas-result video").get_attribute("src"))
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(ARTIFACTS / "studio.png"))

    out = tmp_path / "take.mp4"
    with urllib.request.urlopen(src, timeout=30) as r:
        out.write_bytes(r.read())
    assert set(streams(out)) >= {"video", "audio"}
    wav = load_audio(out, 16000)

    def level(a: float, b: float) -> float:
        return 10 * np.log10(np.mean(wav[round(a * 16000) : round(b * 16000)] ** 2) + 1e-12)

    muted, rest = level(1.1, 2.4), level(0.0, 0.9)
    assert rest - muted >= 20, (muted, rest)
    takes = browser.find_element(By.ID, "rewas-takes").text
    assert "wood knocks" in takes and "mute 1-2.5" in takes, takes  # the take is listed with its prompt and edits

    # the curve from a reference recording; the edits stay on top of it
    reference = tmp_path / "clicks.wav"
    write_wav(reference, samples.click_track(2.0, [0.3, 1.2]), 16000)
    browser.find_element(By.CSS_SELECTOR, "#rewas-reference input[type=file]").send_keys(str(reference))
    _wait(browser, lambda d: "clicks" in d.find_element(By.ID, "rewas-reference").text, 30)  # uploaded: its name shows
    browser.find_element(By.ID, "rewas-use-reference").click()
    _wait(browser, lambda d: "2 edit(s) on the recording clicks.wav" in _status(d), 60)
    assert proc.poll() is None


def test_layers_in_a_browser(server, browser, tmp_path):
    """A box drawn on the picture around the left ball, its tracked curve as layer 1, a flat ambience as layer 2,
    the mix generated; the stereo mix and a stem downloaded from the page. Screenshot: studio_layers.png."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, proc = server
    video = tmp_path / "two.mp4"
    samples.write_video(video, samples.two_objects_frames([0.6, 1.5, 2.4, 3.1], [1.0, 2.0, 2.8]), 4.0, 25)
    browser.get(url)
    _upload(browser, video)
    _wait(browser, lambda d: "The curve is φ's prediction" in _status(d))

    def click_picture(fx: float, fy: float) -> None:  # fractions of the picture
        image = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#rewas-picture img"))[0]
        _wait(browser, lambda d: image.size["width"] > 0)
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
        time.sleep(0.3)  # the page settles where it scrolled; a click while it moves lands elsewhere
        dx, dy = round((fx - 0.5) * image.size["width"]), round((fy - 0.5) * image.size["height"])
        ActionChains(browser).move_to_element_with_offset(image, dx, dy).click().perform()

    click_picture(0.17, 0.15)  # the left ball's box: one corner, then the other
    _wait(browser, lambda d: "opposite corner" in _status(d), 30)
    click_picture(0.33, 0.38)
    _wait(browser, lambda d: "Box 0.1" in _status(d), 30)
    browser.find_element(By.ID, "rewas-use-region").click()
    _wait(browser, lambda d: "on the region 0.1" in _status(d), 60)
    browser.find_element(By.CSS_SELECTOR, "#rewas-prompt textarea").send_keys("a rubber ball bouncing")
    browser.find_element(By.ID, "rewas-add-layer").click()
    _wait(browser, lambda d: "Layer 1 added" in _status(d), 30)
    _set_number(browser, "rewas-level", -6)
    browser.find_element(By.ID, "rewas-use-level").click()
    _wait(browser, lambda d: "on a flat level of -6 nats" in _status(d), 60)
    prompt = browser.find_element(By.CSS_SELECTOR, "#rewas-prompt textarea")
    prompt.clear()
    prompt.send_keys("wind blowing through trees")
    browser.find_element(By.ID, "rewas-add-layer").click()
    _wait(browser, lambda d: "Layer 2 added" in _status(d), 30)
    table = browser.find_element(By.ID, "rewas-layers").text
    assert "a rubber ball bouncing" in table and "the region 0.1" in table and "follows" in table, table
    _set_number(browser, "rewas-steps", 10)
    browser.find_element(By.ID, "rewas-generate-mix").click()
    _wait(browser, lambda d: "Mix 1" in _status(d) or "⚠️" in _status(d), 240)
    assert "Mix 1: 2 layer(s), stereo" in _status(browser), _status(browser)
    links = _wait(
        browser,
        lambda d: [
            a.get_attribute("href")
            for a in d.find_elements(By.CSS_SELECTOR, "#rewas-files a")
            if a.get_attribute("href")
        ],
    )
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight / 3)")
    browser.save_screenshot(str(ARTIFACTS / "studio_layers.png"))
    import re

    import soundfile as sf

    wanted = {
        "mix": next(h for h in links if re.search(r"mix\d+-seed\d+\.wav$", h)),
        "stem": next(h for h in links if re.search(r"01_a_rubber_ball_bouncing\.wav$", h)),
    }
    for name, href in wanted.items():
        out = tmp_path / f"{name}.wav"
        with urllib.request.urlopen(href, timeout=30) as r:
            out.write_bytes(r.read())
        audio, rate = sf.read(out, dtype="float32")
        assert rate == 16000 and audio.shape == (64000, 2), (name, audio.shape)
    assert any(h.endswith("soundtrack.json") for h in links) and proc.poll() is None
