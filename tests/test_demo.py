"""The demo's functions without a browser: bad uploads, a normal run through the real bitstream
(the same bytes as `compress`, decoded as `decompress` decodes), streaming, no recompiles, the
Gradio page and the command's argument errors. Runlocal weights, 1-2 s of generated music.

The browser test is tests/test_demo_browser.py (slow).
"""

import os

import numpy as np
import pytest
import soundfile as sf

from jax_codec import bitstream
from jax_codec.config import load_config
from jax_codec.data.synthetic import render_song
from jax_codec.demo import process
from jax_codec.demo.engine import DemoModel, bucket_lengths
from jax_codec.demo.process import UploadError, load_upload, run_codec, run_stream
from jax_codec.inference.api import LoadedCodec

CONFIG = "configs/base.py:runlocal"
MAX_SECONDS = 2.0
SR = 44100


@pytest.fixture(scope="module")
def model(runlocal_codec):
    codec, params = runlocal_codec
    m = DemoModel(LoadedCodec(codec, params, load_config(CONFIG)), max_seconds=MAX_SECONDS)
    m.warmup(stream=False)
    return m


def song(seconds, sr=SR, channels=1, seed=3):
    return render_song(seconds, seed, sr, channels)


def write(path, x, sr=SR, **kw):
    sf.write(str(path), x, sr, **kw)
    return str(path)


# ---------------------------------------------------------------------------------- uploads


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 20)
    with pytest.raises(UploadError, match="notes.wav is not audio the demo can read"):
        load_upload(str(path), SR)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(UploadError, match=r"empty \(0 bytes\)"):
        load_upload(str(path), SR)


def test_no_file():
    with pytest.raises(UploadError, match="No audio"):
        load_upload(None, SR)


def test_silence(tmp_path):
    path = write(tmp_path / "quiet.wav", np.zeros(SR, np.float32))
    with pytest.raises(UploadError, match="silent"):
        load_upload(path, SR)
    path = write(tmp_path / "hiss.wav", np.full(SR, 1e-5, np.float32), subtype="FLOAT")
    with pytest.raises(UploadError, match=r"silent \(peak -100 dBFS\)"):
        load_upload(path, SR)


def test_too_short(tmp_path):
    path = write(tmp_path / "blip.wav", song(0.2))
    with pytest.raises(UploadError, match="too short"):
        load_upload(path, SR)


def test_too_long_is_trimmed_with_a_notice(tmp_path):
    x = song(3.0)
    path = write(tmp_path / "long.wav", x, subtype="FLOAT")
    audio, sr, notices = load_upload(path, SR, max_seconds=1.5)
    assert sr == SR and audio.shape == (1, int(1.5 * SR))
    np.testing.assert_array_equal(audio[0], x[: audio.shape[1]])  # the start, untouched
    assert any("trimmed to the first 1.5 s" in n for n in notices), notices


def test_48k_stereo_is_resampled_and_kept_stereo(tmp_path):
    x = song(1.2, sr=48000, channels=2)
    path = write(tmp_path / "stereo48.wav", x, 48000)
    audio, sr, notices = load_upload(path, SR)
    assert sr == SR
    assert audio.shape == (2, bitstream.resampled_length(x.shape[0], 48000, SR))
    assert any("Resampled from 48000 Hz" in n for n in notices), notices
    assert not np.allclose(audio[0], audio[1])  # left and right stay distinct


def test_more_channels_are_folded_to_stereo(tmp_path):
    x = np.stack([song(1.0, seed=s) for s in (1, 2, 3)], axis=1)
    audio, _, notices = load_upload(write(tmp_path / "three.wav", x), SR)
    assert audio.shape[0] == 2
    np.testing.assert_allclose(audio[1], x[:, 1], atol=1e-4)  # even channels -> right
    assert any("3 channels folded to stereo" in n for n in notices), notices


def test_formats_soundfile_cannot_read_go_through_ffmpeg(tmp_path):
    import subprocess

    from jax_codec.evaluation import baselines

    try:
        exe = baselines.ffmpeg_path()
    except baselines.FFmpegNotFoundError:
        pytest.skip("no ffmpeg")
    src = write(tmp_path / "src.wav", song(1.0, channels=2))
    m4a = str(tmp_path / "phone.m4a")
    cmd = [exe, "-nostdin", "-loglevel", "error", "-i", src, "-c:a", "aac", "-b:a", "96k", m4a]
    subprocess.run(cmd, check=True, timeout=60)
    audio, sr, notices = load_upload(m4a, SR)
    assert audio.shape[0] == 2 and abs(audio.shape[1] - SR) < 0.05 * SR
    assert notices[0].startswith("Decoded with ffmpeg")


# ---------------------------------------------------------------------------------- a run


@pytest.mark.parametrize(("channels", "k"), [(1, 2), (2, 4)])
def test_run_codec(model, tmp_path, monkeypatch, channels, k):
    from jax_codec.evaluation import metrics
    from jax_codec.inference import compress

    x = song(1.3, channels=channels)
    audio, sr, _ = load_upload(write(tmp_path / "in.wav", x), SR)
    r = run_codec(model, audio, k, str(tmp_path / "run"), name="song")

    t = audio.shape[1]
    assert r["reconstruction"].shape == r["original"].shape == (channels, t)
    assert np.isfinite(r["reconstruction"]).all()
    for key in ("spectrograms", "differences", "codes"):
        with open(r["images"][key], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    ours = r["metrics"]["ours"]
    assert np.isfinite(ours["mel_distance"]) and np.isfinite(ours["si_sdr"])
    assert ("visqol" in ours) == ("visqol" in metrics.available_metrics())
    assert r["actual_kbps"] == pytest.approx(r["size_bytes"] * 8 / (t / sr) / 1e3)
    text = process.format_metrics(r)
    assert "mel distance" in text and f"{r['size_bytes']:,} bytes" in text
    # The stereo image, for a stereo input only.
    stereo = set(process.STEREO_METRICS)
    assert (stereo <= set(ours)) == (channels == 2) and not (channels == 1 and stereo & set(ours))
    if channels == 2:
        assert all(np.isfinite(ours[m]) for m in stereo)
        assert "side mel distance" in text and "level difference L/R" in text

    # The file: a valid .jcodec with the run's codes, as `compress` makes of the input WAV.
    header, codes = bitstream.read_file(r["jcodec_path"])
    assert (header.channels, header.num_samples, header.n_quantizers) == (channels, t, k)
    assert header.model_hash == model.loaded.fingerprint
    for level, c in enumerate(r["codes"]):
        for ch in range(channels):
            np.testing.assert_array_equal(codes[ch][level], c[ch])
    out = str(tmp_path / "cli.jcodec")
    compress.compress_file(r["original_path"], out, model.loaded, n_quantizers=k)
    with open(out, "rb") as a, open(r["jcodec_path"], "rb") as b:
        assert a.read() == b.read()

    # ... and decompresses to the reconstruction the page plays.
    wav = str(tmp_path / "decoded.wav")
    compress.decompress_file(r["jcodec_path"], wav, model.loaded, subtype="FLOAT")
    decoded, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == sr
    np.testing.assert_allclose(decoded.T, r["reconstruction"], atol=1e-6)
    played, _ = sf.read(r["reconstruction_path"], dtype="float32", always_2d=True)
    np.testing.assert_allclose(played.T, r["reconstruction"], atol=1.0 / 32767)


def test_opus_side_by_side_or_notice(model, tmp_path, monkeypatch):
    from jax_codec.evaluation import baselines

    audio, _, _ = load_upload(write(tmp_path / "in.wav", song(1.0)), SR)
    try:
        baselines.ffmpeg_path()
    except baselines.FFmpegNotFoundError:
        pass
    else:
        r = run_codec(model, audio, 1, str(tmp_path / "a"), figures=False)
        assert r["opus"].shape == audio.shape and r["opus_path"]
        assert r["opus_target_kbps"] == pytest.approx(max(r["actual_kbps"], 0.5))
        assert "Opus" in process.format_metrics(r) and "opus" in r["metrics"]

    def missing():
        raise baselines.FFmpegNotFoundError("no ffmpeg")

    monkeypatch.setattr(baselines, "ffmpeg_path", missing)
    r = run_codec(model, audio, 1, str(tmp_path / "b"), figures=False)
    assert r["opus"] is None and r["opus_path"] is None and "opus" not in r["metrics"]
    assert any("ffmpeg was not found" in n for n in r["notices"])
    assert "Opus" not in process.format_metrics(r)


def test_no_recompile_across_lengths_and_bitrates(model):
    from jax_codec.inference import chunked

    assert model.buckets == bucket_lengths(model.codec, MAX_SECONDS)
    enc = chunked._jit(model.codec, "encode")
    before = (enc._cache_size(), model._decode._cache_size())
    for seconds, k in ((0.6, 1), (0.9, 3), (1.7, 4), (2.0, 2)):
        x = song(seconds)[None]
        y = model.decode(model.encode(x)[:k], x.shape[1])
        assert y.shape == x.shape
    assert (enc._cache_size(), model._decode._cache_size()) == before
    with pytest.raises(ValueError, match="longer than the demo's limit"):
        model.padded_length(int(2.5 * SR))


def test_run_stream(model, tmp_path):
    audio = song(1.0)[None]
    r = run_stream(model, audio, 2, str(tmp_path))
    assert r["streaming"] and r["output"].shape == audio.shape
    assert r["max_abs_diff_vs_offline"] < 1e-4
    assert r["latency_ms"] == pytest.approx(1000 * 4 * model.codec.hop_length / SR)
    assert r["chunk_ms_p99"] >= r["chunk_ms_median"] > 0 and r["rtf"] > 0
    assert os.path.getsize(r["output_path"]) > 44
    text = process.format_stream(r)
    assert "real-time factor" in text and "p99" in text


def test_non_causal_model_cannot_stream(runlocal_codec, tmp_path):
    from jax_codec.models.codec import build_codec

    config = load_config("configs/base.py:runlocal,noncausal")
    loaded = LoadedCodec(build_codec(config.model), runlocal_codec[1], config)
    m = DemoModel(loaded, max_seconds=MAX_SECONDS)
    assert not m.bucketed and m.padded_length(1000) == m.codec.length_multiple
    r = run_stream(m, song(1.0)[None], 2, str(tmp_path))
    assert r == {"streaming": False, "notice": process.NON_CAUSAL_NOTICE}
    assert "cannot stream" in process.format_stream(r)


def test_loaded_codec_reads_like_the_old_tuple(runlocal_codec):
    codec, params = runlocal_codec
    config = load_config("configs/base.py:runlocal")
    loaded = LoadedCodec(codec, params, config)
    c, p, cfg = loaded
    assert (c, p, cfg) == (codec, params, config) and len(loaded) == 3
    assert loaded[1] is params and loaded[0] is codec and loaded[-1] is config


# ---------------------------------------------------------------------------------- page, command


def test_build_app(model, tmp_path):
    gr = pytest.importorskip("gradio")
    from jax_codec.demo.app import build_app

    examples = process.make_examples(str(tmp_path / "ex"), SR, seconds=1.0)
    assert [sf.info(p).channels for p in examples] == [1, 2]
    app = build_app(model, workdir=str(tmp_path), examples=examples)
    assert isinstance(app, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"input-audio", "bitrate", "encode", "audio-ours", "spectrograms", "codes",
            "metrics", "jcodec-file", "stream", "stream-metrics"} <= ids  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo"], "give either --checkpoint DIR or --config FILE --random_init"),
        (["demo", "--config", CONFIG], "--config needs --random_init"),
        (["demo", "--config", CONFIG, "--random_init", "--max_seconds", "0"], "--max_seconds"),
        (["demo", "--config", CONFIG, "--random_init", "--port", "70000"], "--port"),
    ],
)
def test_command_errors(argv, message, capsys):
    pytest.importorskip("gradio")
    from jax_codec.__main__ import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


# ---------------------------------------------------------------------------------- figures


def test_code_image_and_difference_spectrograms():
    from jax_codec.evaluation import plots

    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 256, (2, n)) for n in (3, 6, 12)]  # strides 4, 2, 1 over 12 frames
    fig = plots.code_image(codes, (4, 2, 1), 86.13, 256, channel_names=["left", "right"])
    grid = np.asarray(fig.axes[1].images[0].get_array())
    assert grid.shape == (3, 12)
    np.testing.assert_array_equal(grid[0], np.repeat(codes[0][1], 4))  # right channel, coarse
    np.testing.assert_array_equal(grid[2], codes[2][1])
    assert [ax.get_title(loc="left") for ax in fig.axes[:2]] == ["left", "right"]
    assert plots.to_image(fig).ndim == 3
    with pytest.raises(ValueError, match="strides"):
        plots.code_image(codes, (4, 2), 86.13, 256)

    x = song(0.5)
    fig = plots.difference_spectrograms(x, {"same": x, "noisy": x + 0.01}, SR)
    same, noisy = (np.asarray(ax.images[0].get_array()) for ax in fig.axes[:2])
    lo, _ = fig.axes[0].images[0].get_clim()
    assert same.max() < lo < noisy.max()  # no difference sits below the scale's floor
    with pytest.raises(ValueError, match="differs from the reference"):
        plots.difference_spectrograms(x, {"short": x[:100]}, SR)
