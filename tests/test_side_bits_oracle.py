"""benchmarks/side_bits_oracle.py: the side decoder given zeros, the side codes, or the exact
side latent."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from conftest import louder
from test_stereo import SIDE_BITS, music, runlocal

from jax_codec.models.codec import build_codec
from jax_codec.stereo import to_mid_side

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import side_bits_oracle as sbo  # noqa: E402


def test_variants_change_only_the_side_and_quantized_is_the_decoder():
    codec = build_codec(runlocal(**SIDE_BITS).model)
    x = music(1, 0.41, seed=4)[0]
    x = x[: x.shape[0] // codec.length_multiple * codec.length_multiple]
    params = louder(jax.jit(codec.init)({"params": jax.random.key(0)}, jnp.asarray(x)[None]))
    for k in (2, 3):
        out = sbo.decode_variants(codec, params, x, k)
        codes = codec.apply(params, jnp.asarray(x)[None], k, method=codec.encode)
        want = np.asarray(codec.apply(params, codes, method=codec.decode))[0]
        np.testing.assert_allclose(out["quantized"], want, atol=1e-6)
        ms = {name: to_mid_side(y) for name, y in out.items()}
        for name in ("zero", "exact"):
            np.testing.assert_allclose(ms[name][:, 0], ms["quantized"][:, 0], atol=1e-6)
        # Below the side level the side latent is zero; exact is not.
        assert (np.abs(ms["zero"][:, 1] - ms["quantized"][:, 1]).max() <= 1e-6) == (k == 2)
        assert np.abs(ms["exact"][:, 1] - ms["zero"][:, 1]).max() > 1e-4
