"""benchmarks/side_bands.py: the side's log-mel error per band group."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import side_bands  # noqa: E402


def test_side_bands_levels_and_errors():
    rng = np.random.default_rng(0)
    mid = 0.1 * rng.standard_normal(48000)
    side = 0.01 * rng.standard_normal(48000)
    ref = np.stack([mid + side, mid - side], axis=1).astype(np.float32)
    quiet = np.stack([mid + side / 2, mid - side / 2], axis=1).astype(np.float32)
    mono = np.stack([mid, mid], axis=1).astype(np.float32)
    out = side_bands.side_bands(ref, {"same": ref, "quiet": quiet, "mono": mono})
    # White noise: the side 20 dB under the mid in every band group, never at the floor.
    np.testing.assert_allclose(out["ref_side_over_mid_db"], -20.0, atol=0.5)
    assert max(out["ref_side_at_floor"]) == 0.0
    assert out["codecs"]["same"]["side_mel_l1_all"] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(out["codecs"]["quiet"]["side_over_ref_db"], -6.02, atol=0.05)
    # No side at all: every bin at the floor, far below the reference's side.
    assert min(out["codecs"]["mono"]["side_mel_l1"]) > 1.0
    assert max(out["codecs"]["mono"]["side_over_ref_db"]) < -20.0
    with pytest.raises(SystemExit, match="NAME=CHECKPOINT:N_QUANTIZERS"):
        side_bands.main(["joint=run", "--audio=x.wav"])
