"""Tests for jax_codec/training/logging.py: TensorBoard + JSONL writer, progress bar, images."""

import json
import math
import struct
import zlib

import jax.numpy as jnp
import numpy as np
import pytest

from jax_codec.training import logging as tlog

SR = 16000


def _strict_json(line: str) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant} in {line!r}")

    return json.loads(line, parse_constant=reject)


def _event_bytes(logdir) -> bytes:
    files = sorted(logdir.glob("events.out.tfevents.*"))
    assert files, f"no event file in {logdir}"
    return b"".join(f.read_bytes() for f in files)


def test_metric_writer_writes_tensorboard_and_jsonl(tmp_path):
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR // 4) / SR).astype(np.float32)
    with tlog.MetricWriter(tmp_path, enabled=True) as writer:
        writer.write_scalars(
            10, {"loss/mel": np.float32(1.5), "loss/adv": jnp.asarray(0.25), "norm/grad": 3}
        )
        writer.write_scalars(
            20,
            {
                "loss/mel": float("nan"),
                "norm/grad": jnp.asarray(jnp.inf),
                "loss/adv": -np.inf,
                "vq/usage": np.array([0.75]),
                "bad/vector": np.ones(3),  # not a scalar: skipped, no crash
            },
        )
        writer.write_audio(20, {"audio/input": tone, "audio/clipped": 4.0 * tone}, SR)
        writer.write_images(
            20,
            {
                "spec/rgb": np.zeros((8, 16, 3), np.uint8),
                "spec/grey": np.linspace(-80.0, 0.0, 8 * 16).reshape(8, 16),
            },
        )
        writer.flush()

    events = _event_bytes(tmp_path / "tensorboard")
    for tag in (b"loss/mel", b"norm/grad", b"audio/input", b"audio/clipped", b"spec/grey"):
        assert tag in events
    assert b"RIFF" in events  # the audio summaries carry WAV data
    assert events.count(b"\x89PNG") == 2  # and the images PNG data

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first, second = (_strict_json(line) for line in lines)
    assert first == {"step": 10, "loss/mel": 1.5, "loss/adv": 0.25, "norm/grad": 3.0}
    assert all(type(v) is float for k, v in first.items() if k != "step")
    assert second == {
        "step": 20,
        "loss/mel": "NaN",
        "norm/grad": "Infinity",
        "loss/adv": "-Infinity",
        "vq/usage": 0.75,
    }
    assert math.isnan(float(second["loss/mel"])) and float(second["loss/adv"]) == -math.inf

    # A resumed run appends to the same file.
    with tlog.MetricWriter(tmp_path, enabled=True) as writer:
        writer.write_scalars(30, {"loss/mel": 0.5})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [_strict_json(line)["step"] for line in lines] == [10, 20, 30]


def test_disabled_writer_and_bar_write_nothing(tmp_path, capsys):
    writer = tlog.MetricWriter(tmp_path, enabled=False)
    writer.write_scalars(1, {"loss/mel": 1.0})
    writer.write_audio(1, {"audio/input": np.zeros(100, np.float32)}, SR)
    writer.write_images(1, {"spec/input": np.zeros((4, 4, 3), np.uint8)})
    writer.flush()
    writer.close()
    bar = tlog.ProgressBar(100, 0, 1.0, enabled=False)
    bar.update(5, {"loss/mel": 1.0})
    bar.close()
    assert list(tmp_path.iterdir()) == []
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_shows_losses_and_rates(capsys):
    bar = tlog.ProgressBar(100, initial_step=10, audio_seconds_per_step=2.0, enabled=True)
    bar.rate_window_s = 0.0
    bar.update(11, {"loss/mel": 1.25, "loss/adv": 0.5, "norm/grad": 9.0})
    bar.update(20, {"loss/mel": 1.0, "loss/adv": 0.5, "norm/grad": 9.0})
    assert bar._bar.n == 20
    bar.close()
    err = capsys.readouterr().err
    assert "20/100" in err
    assert "mel=1" in err and "adv=0.5" in err
    assert "norm/grad" not in err  # only losses by default
    assert "steps/s=" in err and "audio s/s=" in err


def _decode_png(data: bytes) -> tuple[tuple[int, int, int], np.ndarray]:
    """Reads back an unfiltered 8-bit PNG as written by encode_png."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 0).all()
    return (height, width, channels), rows[:, 1:].reshape(height, width, channels)


def test_encode_png_round_trips():
    rng = np.random.default_rng(0)
    for channels in (1, 3, 4):
        image = rng.integers(0, 256, size=(5, 7, channels), dtype=np.uint8)
        shape, pixels = _decode_png(tlog.encode_png(image))
        assert shape == (5, 7, channels)
        np.testing.assert_array_equal(pixels, image)


def _brightest_row(image: np.ndarray) -> int:
    return int(np.argmax(image.astype(np.float64).sum(axis=(1, 2))))


def test_spectrogram_image_puts_low_frequencies_at_the_bottom():
    t = np.arange(SR) / SR
    low = tlog.spectrogram_image(0.5 * np.sin(2 * np.pi * 100 * t), SR, n_mels=64)
    high = tlog.spectrogram_image(0.5 * np.sin(2 * np.pi * 5000 * t), SR, n_mels=64)
    frames = 1 + SR // 512
    assert low.shape == (64, frames, 3) and low.dtype == np.uint8
    assert _brightest_row(low) >= 64 - 8  # the 100 Hz tone sits in the bottom rows
    assert _brightest_row(high) < 32  # 5 kHz is in the upper half
    # Loud is bright, quiet is dark: the tone's row outshines the top row.
    assert low[_brightest_row(low)].mean() > 3 * low[0].mean() + 20

    stereo = np.stack([np.sin(2 * np.pi * 100 * t), np.zeros_like(t)], axis=-1)
    assert tlog.spectrogram_image(stereo, SR, n_mels=64).shape == (64, frames, 3)
    silent = tlog.spectrogram_image(np.zeros(SR), SR, n_mels=64)
    assert (silent == silent[0, 0]).all() and silent[0, 0].sum() < 30  # uniformly dark


def test_listener_metrics_report_level_errors_in_db():
    from jax_codec.training.loop import listener_metrics

    rng = np.random.default_rng(0)
    sr = 16000
    ref = (0.1 * rng.standard_normal((3, sr))).astype(np.float32)
    louder = ref * np.float32(10 ** (6.0 / 20))  # +6 dB
    m = listener_metrics(ref, louder, sr, 4)
    assert m["eval/level_error_db/4q"] == pytest.approx(6.0, abs=0.01)
    assert m["eval/loudness_diff/4q"] == pytest.approx(6.0, abs=0.01)
    assert m["eval/si_sdr/4q"] > 100.0  # scale-invariant: a gain is no error (float32 rounding)
    noisy = ref + np.float32(0.1) * rng.standard_normal(ref.shape).astype(np.float32)
    # Equal signal and noise power: 0 dB, the order (reference, estimate) as in `evaluate`.
    assert listener_metrics(ref, noisy, sr, 1)["eval/si_sdr/1q"] == pytest.approx(0.0, abs=0.2)
    quieter = listener_metrics(ref, ref / 4, sr, 1)  # -12 dB
    assert quieter["eval/level_error_db/1q"] == pytest.approx(-12.04, abs=0.01)
    assert quieter["eval/loudness_diff/1q"] == pytest.approx(12.04, abs=0.01)
    # A silent reconstruction (gated away) counts as -70 LUFS: a large, finite error that
    # TensorBoard can plot and a mean cannot hide.
    from jax_codec.evaluation.metrics import SILENCE_LUFS, loudness

    silent = listener_metrics(ref[:1], np.zeros_like(ref[:1]), sr, 2)
    expected = loudness(ref[0], sr) - SILENCE_LUFS
    assert expected > 40
    assert silent["eval/loudness_diff/2q"] == pytest.approx(expected, abs=0.01)
    assert silent["eval/level_error_db/2q"] == pytest.approx(-expected, abs=0.01)


def test_listener_metrics_skip_loudness_of_clips_shorter_than_a_block():
    from jax_codec.training.loop import listener_metrics

    short = np.full((2, 1000), 0.1, np.float32)  # 62 ms at 16 kHz: no 400 ms block
    m = listener_metrics(short, short, 16000, 1)
    assert math.isnan(m["eval/loudness_diff/1q"]) and math.isnan(m["eval/level_error_db/1q"])


def test_divergence_watch_warns_once_per_sign():
    """The two signs of a diverging run, each reported once; a healthy run gives nothing."""
    healthy = tlog.DivergenceWatch()
    for step in range(10, 2001, 10):
        norm = 120 + 0.1 * step  # a slow growth, as in a healthy run
        commit = 5.0 + 20.0 * (step % 300 == 0)  # with spikes of 5x
        assert healthy.update(step, {"norm/params_g": norm, "vq/commitment": commit}) == []

    early = tlog.DivergenceWatch()  # the first 200 steps: a doubling is not a sign yet
    for step in range(10, 201, 10):
        norm = 121.0 if step < 90 else 242.0
        assert early.update(step, {"norm/params_g": norm}) == []
    assert early.update(240, {"norm/params_g": 500.0})  # after the warm-up it is

    watch = tlog.DivergenceWatch(window=50)
    out = []
    for step in range(10, 601, 10):
        norm = 200.0 if step < 550 else 500.0  # 2.5x within 50 steps at step 550
        out += [(step, m) for m in watch.update(step, {"norm/params_g": norm})]
    assert [s for s, _ in out] == [550]
    assert "parameter norm grew 200 -> 500 in 50 steps" in out[0][1]
    assert "docs/training.md" in out[0][1]
    out = []
    for step in range(610, 1000, 10):
        commit = 2.0 if step < 900 else 500.0  # 250x the median from step 900 on
        out += [(step, m) for m in watch.update(step, {"vq/commitment": commit, "x": 1})]
    assert [s for s, _ in out] == [900] and "250x its recent median" in out[0][1]
    # Missing, NaN and infinite values are ignored.
    assert watch.update(1000, {"norm/params_g": math.nan, "vq/commitment": math.inf}) == []
