"""benchmarks/side_level_oracle.py: the side-level rescaling and its bit cost."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import side_level_oracle as slo  # noqa: E402

HOP = 160


def pair(side_amp, seconds=1.0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    m = 0.3 * rng.standard_normal(n)
    s = side_amp * rng.standard_normal(n)
    return np.stack([m + s, m - s]).astype(np.float32)


def test_side_ratio_and_rescale_hit_the_target_level():
    est = pair(np.linspace(0.01, 0.2, 16000))  # a side that grows, to be made steady
    target = np.full(-(-16000 // HOP), -12.0)
    out = slo.rescale_side(est, target, HOP, max_gain_db=40.0)
    m, s = 0.5 * (out[0] + out[1]), 0.5 * (out[0] - out[1])
    r = slo.side_ratio_db(m, s, HOP)
    # Gains are interpolated between frame centres: on average on the target, each frame
    # within a dB of it (the noise side's level varies from frame to frame).
    assert np.mean(r[1:-1]) == pytest.approx(-12.0, abs=0.1)
    np.testing.assert_allclose(r[1:-1], -12.0, atol=1.0)
    np.testing.assert_allclose(m, 0.5 * (est[0] + est[1]), atol=1e-7)  # the mid is untouched


def test_silent_target_zeroes_the_side_and_gain_is_capped():
    est = pair(0.1)
    n = -(-est.shape[1] // HOP)
    silent = slo.rescale_side(est, np.full(n, -np.inf), HOP, max_gain_db=20.0)
    np.testing.assert_allclose(silent[0], silent[1], atol=1e-7)
    quiet = pair(1e-4)
    loud = slo.rescale_side(quiet, np.zeros(n), HOP, max_gain_db=20.0)  # wants +65 dB, gets 20
    gain = np.abs(loud[0] - loud[1]).mean() / np.abs(quiet[0] - quiet[1]).mean()
    assert gain == pytest.approx(10.0, rel=0.05)


def test_quantize_floor_and_entropy():
    r = np.array([-3.2, -3.9, -50.0, 20.0, -1.4])
    q = slo.quantize_db(r, 1.5, floor=-40.0)
    np.testing.assert_array_equal(q[[0, 1, 4]], [-3.0, -4.5, -1.5])
    assert q[2] == -np.inf and q[3] == 12.0  # below the floor: silent; above 12 dB: clipped
    np.testing.assert_array_equal(slo.quantize_db(r, 0, floor=-40.0)[[0, 4]], [-3.2, -1.4])
    assert slo.entropy_kbps(np.full(100, -6.0), 75.0) == 0.0  # a constant level costs nothing
    # Two equally likely deltas (and the first, 0): about one bit per value.
    alt = np.tile([-6.0, -3.0], 500)
    assert slo.entropy_kbps(alt, 1000.0) == pytest.approx(1.0, abs=0.02)
