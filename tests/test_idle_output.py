"""benchmarks/idle_output.py: the output level for digital silence and its frame-rate share."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import idle_output  # noqa: E402


def test_harmonic_share_separates_a_frame_periodic_buzz_from_noise():
    sr, hop = 8000, 100
    t = np.arange(4 * sr)
    buzz = np.stack([np.sin(2 * np.pi * 3 * t / hop), np.sign(np.sin(2 * np.pi * t / hop))], 1)
    noise = np.random.default_rng(0).standard_normal((4 * sr, 2))
    assert idle_output.harmonic_share(buzz, sr, sr / hop) > 0.95
    assert idle_output.harmonic_share(noise, sr, sr / hop) < 0.05
    assert idle_output.harmonic_share(np.zeros((sr, 1)), sr, 80.0) == 0.0
    square = np.tile([[0.1], [-0.1]], (5, 2))
    assert idle_output.rms_dbfs(square) == pytest.approx(-20.0)
    assert idle_output.rms_dbfs(square + 0.5) == pytest.approx(-20.0)  # DC is not heard


def test_measure_a_model_on_silence_and_music(runlocal_codec):
    """A random-init codec decodes silence to a signal that repeats every hop; the music
    excerpt's levels in and out are reported (a mono model takes the left channel)."""
    codec, params = runlocal_codec
    loaded = type("Loaded", (), {"codec": codec, "params": params})()
    sr = codec.sample_rate
    music = {"tone": np.stack([0.1 * np.sin(np.arange(2 * sr) * 0.05)] * 2, 1).astype(np.float32)}
    r = idle_output.measure(loaded, music, seconds=2.0, n_quantizers=2, quiet_db=30.0)
    assert r["frame_rate_hz"] == sr / codec.hop_length
    assert r["silence_harmonic_share"] > 0.99
    assert np.isfinite(r["silence_out_dbfs"]) and r["silence_out_dbfs"] < 0
    assert len(r["silence_dc"]) == codec.channels
    assert r["music"]["tone"]["in_dbfs"] == pytest.approx(-23.0, abs=0.1)
    assert np.isfinite(r["music"]["tone"]["out_dbfs"])
    assert r["music"]["tone"]["quiet_in_dbfs"] == pytest.approx(-53.0, abs=0.1)
    # The quiet excerpt really is decoded: a random-init codec does not give the same level.
    assert np.isfinite(r["music"]["tone"]["quiet_out_dbfs"])
    assert r["music"]["tone"]["quiet_out_dbfs"] != r["music"]["tone"]["out_dbfs"]


def test_bad_model_spec_is_an_argument_error(capsys):
    with pytest.raises(SystemExit):
        idle_output.main(["just_a_path"])
    assert "LABEL=CHECKPOINT" in capsys.readouterr().err
