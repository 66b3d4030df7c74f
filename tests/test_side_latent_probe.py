"""benchmarks/side_latent_probe.py: a joint model's latent and decoded side, stereo against mono."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import side_latent_probe as slp  # noqa: E402

from jax_codec.config import apply_overrides, load_config  # noqa: E402
from jax_codec.models.codec import build_codec  # noqa: E402


def test_probe_compares_stereo_and_mono_input():
    config = load_config("configs/base.py:runlocal")
    apply_overrides(config, {"model.channels": "2"})
    codec = build_codec(config.model)
    n = 2 * codec.length_multiple
    rng = np.random.default_rng(0)
    mid = 0.2 * rng.standard_normal(n)
    side = 0.05 * rng.standard_normal(n)
    x = np.stack([mid + side, mid - side], axis=1).astype(np.float32)
    params = jax.jit(codec.init)(jax.random.key(0), jnp.asarray(x)[None])
    r = slp.probe(codec, params, x)
    assert r["input_side_over_mid_db"] == pytest.approx(-12.04, abs=0.3)
    assert r["latent_rel_change"] > 0 and r["quantized_rel_change"] >= 0
    assert set(r) >= {"decoded_side_over_mid_db_stereo", "decoded_side_over_mid_db_mono"}
    # Already mono input: both passes are the same, nothing moves.
    m = np.repeat(x.mean(axis=1, keepdims=True), 2, axis=1)
    r = slp.probe(codec, params, m)
    assert r["latent_rel_change"] == pytest.approx(0.0, abs=1e-6)
    assert r["input_side_over_mid_db"] < -150
    with pytest.raises(SystemExit, match="FILE@START_SECONDS"):
        slp.main(["run", "--audio=song.wav"])
