"""benchmarks/code_geometry.py: where a level's inputs point and how many codes they use."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import code_geometry  # noqa: E402


def test_geometry_tells_a_shared_offset_from_spread_inputs():
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((4000, 8))
    offset = spread * 0.1 + 3.0  # every input near (3, ..., 3)
    book = rng.standard_normal((64, 8))
    book[:5] = 1.0 + 0.01 * rng.standard_normal((5, 8))  # five codes along the offset
    codes = np.repeat(np.arange(4), 1000)
    a = code_geometry.geometry(spread, book, codes)
    b = code_geometry.geometry(offset, book, codes)
    assert a["direction_offset"] < 0.1 and b["direction_offset"] > 0.99
    assert b["spread_over_mean"] < 0.05 < 1.0 < a["spread_over_mean"]
    assert b["codes_in_cone"] >= 5
    assert code_geometry.geometry(offset, -np.abs(book), codes)["codes_in_cone"] == 0
    assert a["perplexity"] == pytest.approx(4.0) and a["codes_used"] == 4
    assert b["input_norm_median"] == pytest.approx(np.sqrt(8) * 3.0, rel=0.05)


def test_measure_reports_every_level_of_a_model(runlocal_codec):
    codec, params = runlocal_codec
    loaded = type("Loaded", (), {"codec": codec, "params": params})()
    t = np.arange(codec.sample_rate // 2)
    x = np.stack([0.1 * np.sin(0.05 * t), 0.1 * np.sin(0.07 * t)], 1).astype(np.float32)
    levels = code_geometry.measure(loaded, [x])
    assert len(levels) == codec.num_quantizers
    for g in levels:
        assert 0.0 <= g["direction_offset"] <= 1.0 + 1e-9
        assert 1.0 <= g["perplexity"] <= g["codes_used"] + 1e-9
    # Level i's latent error is what levels 0..i leave of the encoder's output.
    t = x.shape[0] // codec.length_multiple * codec.length_multiple
    rows = x[None, :t] if codec.channels == 2 else x.T[:, :t, None]
    for n in (1, codec.num_quantizers):
        out = codec.apply(params, rows, n)
        z, q = np.asarray(out.latents, np.float64), np.asarray(out.quantized, np.float64)
        want = np.sum((z - q) ** 2) / np.sum(z**2)
        assert levels[n - 1]["latent_error"] == pytest.approx(want, rel=1e-4)
    assert levels[0]["latent_error"] != pytest.approx(levels[-1]["latent_error"], rel=1e-3)


def test_load_music_is_a_normalised_stereo_excerpt(tmp_path):
    import soundfile as sf

    from jax_codec import levels

    sr = 16000
    path = str(tmp_path / "tone.wav")
    sf.write(path, 0.5 * np.sin(np.arange(3 * sr) * 0.05), sr)  # mono
    x = code_geometry.load_music(path, 8000, seconds=1.0, start=1.0)
    assert x.shape == (8000, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0], x[:, 1])
    assert levels.level_db(x, 8000, channels_last=True) == pytest.approx(-18.0, abs=0.1)
