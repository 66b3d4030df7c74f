"""benchmarks/side_gradients.py: what each loss term wants of a joint model's decoded side."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import side_gradients as sg  # noqa: E402

from jax_codec.config import apply_overrides, load_config  # noqa: E402
from jax_codec.training.step import Trainer  # noqa: E402


def _signal(n, side_scale, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 48000.0
    mid = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    side = side_scale * rng.standard_normal(n)
    return np.stack([mid + side, mid - side], axis=1).astype(np.float32)[None]


def test_side_level_gradients_split_mid_and_side():
    config = load_config("configs/music48.py:runlocal")
    # The mel terms only (the others compile slowly and are checked the same way).
    off = ("stft", "onset", "adv", "fm", "stereo_image")
    apply_overrides(config, {f"loss.{k}_weight": "0" for k in off})
    trainer = Trainer(config)
    n = 4800
    x = jnp.asarray(_signal(n, 0.0))  # mono input: a silent side
    y = jnp.asarray(_signal(n, 0.03, seed=1))  # a decoded side ~16 dB under the mid
    disc_params = trainer.disc.init(jax.random.key(0), trainer.disc_input(x)[:1])
    rows = sg.side_level_gradients(trainer, disc_params, x, y)
    assert set(rows) == {"mel/left", "mel/right", "mel/mid", "mel/side"}
    # The mid's own term does not see the side, nor the side's the mid.
    assert rows["mel/mid"]["side_gain"] == 0.0
    assert rows["mel/side"]["mid_gain"] == 0.0
    # Against a silent side, a quieter decoded side lowers the side's mel term.
    assert rows["mel/side"]["side_gain"] > 0
    # side_gain is d(term)/d(log g) for the side scaled by g: a finite difference agrees.
    weight, f = sg.term_functions(trainer)["mel/side"]
    mid, side = (y[..., :1] + y[..., 1:]) / 2, (y[..., :1] - y[..., 1:]) / 2
    eps = 1e-3

    def at(g):
        return float(f(jnp.concatenate([mid + g * side, mid - g * side], axis=-1), x, disc_params))

    fd = weight * (at(1 + eps) - at(1 - eps)) / (2 * eps)
    assert rows["mel/side"]["side_gain"] == pytest.approx(fd, rel=0.05)
    assert sg.side_re_mid_db(np.asarray(y)) == pytest.approx(
        10 * np.log10(0.03**2 / (0.2**2 / 2 + 0.05**2)), abs=0.5
    )
