"""The demo in a real browser: `python -m jax_codec demo` as a subprocess, driven headless by
Playwright on Debian's chromium: upload a generated WAV, pick a bitrate, Encode, and check that
the players, figures, metrics and the `.jcodec` download appear; then the Streaming tab.

Slow (`pytest -m slow`). Skips without /usr/bin/chromium, playwright or gradio, except in CI
(`CI=true`), where their absence is a failure. A screenshot goes to `$TEST_ARTIFACTS/demo.png`
(default: the test's tmp_path).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import soundfile as sf

from jax_codec.data.synthetic import render_song

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT_S = 150
RUN_TIMEOUT_MS = 90_000


def _require_tools():
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    for module, package in (("playwright.sync_api", "playwright"), ("gradio", "gradio")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{package} (pip install {package})")
    if missing:
        message = "the browser test needs " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI installs them)")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path) as f:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{f.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    with open(log_path) as f:
        pytest.fail(f"the demo did not answer within {START_TIMEOUT_S} s:\n{f.read()[-3000:]}")


@pytest.fixture
def demo_url(tmp_path):
    _require_tools()
    port = _free_port()
    log_path = str(tmp_path / "demo.log")
    cmd = [sys.executable, "-m", "jax_codec", "demo", "--config", "configs/base.py:runlocal",
           "--random_init", "--host", "127.0.0.1", "--port", str(port), "--max_seconds", "5"]  # fmt: skip
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "JAX_PLATFORMS": "cpu"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _src(page, selector: str) -> list[str]:
    return [s for s in page.eval_on_selector_all(selector, "els => els.map(e => e.src)") if s]


def test_encode_and_stream_in_browser(demo_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from jax_codec import bitstream
    from jax_codec.evaluation import baselines

    wav = str(tmp_path / "upload_song.wav")
    sf.write(wav, render_song(1.5, 7, 44100, 1), 44100, subtype="PCM_16")
    artifacts = os.environ.get("TEST_ARTIFACTS") or str(tmp_path)
    os.makedirs(artifacts, exist_ok=True)
    try:
        baselines.ffmpeg_path()
        have_ffmpeg = True
    except baselines.FFmpegNotFoundError:
        have_ffmpeg = False

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(demo_url)
            page.locator("#input-audio input[type=file]").set_input_files(wav)
            expect(page.locator("#input-status")).to_contain_text("Ready: 1.50 s, mono")
            page.get_by_label("2 · ").check()
            page.locator("#encode").click()
            expect(page.locator("#metrics table")).to_be_visible(timeout=RUN_TIMEOUT_MS)

            metrics = page.locator("#metrics").inner_text()
            assert "mel distance" in metrics and "SI-SDR" in metrics and "kbps" in metrics
            assert "2 quantizers" in metrics
            for player in ("#audio-original", "#audio-ours"):
                expect(page.locator(f"{player} audio[src]").first).to_be_attached()
                assert _src(page, f"{player} audio"), f"{player} has no audio source"
            if have_ffmpeg:
                assert _src(page, "#audio-opus audio") and "Opus" in metrics
            for figure in ("#spectrograms", "#differences", "#codes"):
                img = page.locator(f"{figure} img").first
                expect(img).to_be_visible()
                assert img.evaluate("e => e.complete && e.naturalWidth") > 0, figure
            link = page.locator("#jcodec-file a[download]").first
            expect(link).to_be_attached()
            href = link.get_attribute("href")
            assert href.endswith("upload_song.jcodec")
            with urllib.request.urlopen(href, timeout=10) as r:
                data = r.read()
            path = tmp_path / "downloaded.jcodec"
            path.write_bytes(data)
            header, _ = bitstream.read_file(str(path))
            assert (header.n_quantizers, header.channels) == (2, 1)
            assert f"{len(data):,} bytes" in metrics
            page.screenshot(path=os.path.join(artifacts, "demo.png"), full_page=True)

            page.get_by_role("tab", name="Streaming").click()
            page.locator("#stream").click()
            stream = page.locator("#stream-metrics")
            expect(stream.locator("table")).to_be_visible(timeout=RUN_TIMEOUT_MS)
            text = stream.inner_text()
            for item in ("algorithmic latency", "real-time factor", "p99", "46.4 ms"):
                assert item in text
            assert _src(page, "#audio-stream audio")
            page.screenshot(path=os.path.join(artifacts, "demo_streaming.png"), full_page=True)
        finally:
            browser.close()
