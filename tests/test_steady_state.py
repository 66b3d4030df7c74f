"""benchmarks/steady_state.py: level per window, code perplexity and code dependence."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import steady_state  # noqa: E402


def test_code_perplexity_and_window_levels():
    assert steady_state.code_perplexity(np.zeros((3, 7), int), 16) == pytest.approx(1.0)
    assert steady_state.code_perplexity(np.arange(8), 16) == pytest.approx(8.0)
    assert steady_state.code_perplexity(np.array([0, 0, 1, 1]), 4) == pytest.approx(2.0)
    x = np.ones((1, 40, 2)) * np.tile([1.0, -1.0], 20)[None, :, None]
    y = x.copy()
    y[:, 10:] *= 0.1  # 20 dB down after the first window of 10
    errors = steady_state.window_level_errors(x, y, 10)
    np.testing.assert_allclose(errors, [0.0, -20.0, -20.0, -20.0], atol=1e-6)
    assert len(steady_state.window_level_errors(x, y, 15)) == 2  # the partial window left out


def test_measure_a_model(runlocal_codec):
    """A random-init codec on a chirp: every number is finite, one level error per window,
    one perplexity per codebook, and a random decoder's output depends on its codes."""
    codec, params = runlocal_codec
    loaded = type("Loaded", (), {"codec": codec, "params": params})()
    sr = codec.sample_rate
    t = np.arange(16 * codec.length_multiple) / sr
    chirp = 0.1 * np.sin(2 * np.pi * (200 + 2000 * t) * t)
    music = np.stack([np.stack([chirp, 0.5 * chirp], 1)] * 2).astype(np.float32)
    r = steady_state.measure(loaded, music, n_quantizers=2, window_s=0.1)
    assert len(r["window_level_error_db"]) == int(music.shape[1] // int(0.1 * sr))
    assert r["first_window_level_error_db"] == pytest.approx(
        r["window_level_error_db"][0], abs=1e-3
    )
    assert len(r["perplexity"]) == 2 and all(p >= 1.0 for p in r["perplexity"])
    for key in ("steady_level_error_db", "level_error_db", "latent_time_var", "latent_mean_sq"):
        assert np.isfinite(r[key]), key
    assert r["shuffled_diff_db"] > -20.0


def test_receptive_field_span():
    g = np.zeros((10, 2))
    assert steady_state._span(g) == 0
    g[3:7, 1] = 1.0
    assert steady_state._span(g) == 4
    g[0, 0] = 1.0  # reaches the start: longer than the input
    assert steady_state._span(g) is None


def test_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit):
        steady_state.main(["just_a_path", "--music", str(tmp_path)])
    assert "LABEL=CHECKPOINT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        steady_state.main(["a=b", "--music", str(tmp_path)])
    assert "no audio files" in capsys.readouterr().err


def test_receptive_field_of_the_runlocal_model(runlocal_codec):
    """base.py:runlocal's field: more than one frame per side of the bottleneck, less than the
    96 frames measured over, and the chained count is the encoder's frames plus the decoder's."""
    codec, params = runlocal_codec
    rf = steady_state.receptive_field(codec, params)
    hop = codec.hop_length
    assert 4 * hop < rf["encoder_samples"] < 48 * hop
    assert 4 < rf["decoder_frames"] < 48
    assert rf["frames"] == -(-rf["encoder_samples"] // hop) + rf["decoder_frames"]
