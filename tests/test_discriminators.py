"""Discriminators: output structure and shapes, DAC-exact STFT framing and parameter counts,
input normalisation, weight-norm invariance, gradients. Tiny widths, 0.25 s at 16 kHz."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jax_codec.models import discriminators as D

T = 4001  # 0.25 s at 16 kHz, +1 so no period, rate or hop divides it
B = 2


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _audio(t: int = T, seed: int = 0) -> jax.Array:
    rng = np.random.default_rng(seed)
    n = np.arange(t) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * n)[None] + 0.1 * rng.standard_normal((B, t))
    return jnp.asarray(x[..., None], jnp.float32)


PERIODS, RATES, WINDOWS, WIDTH = (2, 7), (1, 4), (256, 128), 4  # T % period, T % rate != 0


@pytest.fixture(scope="module")
def tiny():
    """One tiny model with every kind, initialised once: compiles dominate this file's time."""
    module = D.Discriminators(
        periods=PERIODS, msd_rates=RATES, mrd_window_lengths=WINDOWS, channels=WIDTH
    )
    x = _audio()
    variables = jax.jit(module.init)(jax.random.key(0), x)
    apply = jax.jit(module.apply)
    return module, variables, apply, x, apply(variables, x)


def _assert_finite(outputs):
    for logits, feats in outputs:
        assert bool(jnp.all(jnp.isfinite(logits)))
        assert all(bool(jnp.all(jnp.isfinite(f))) for f in feats)


def test_mpd_shapes_with_period_not_dividing_t(tiny):
    out, c = tiny[-1][: len(PERIODS)], WIDTH
    for p, (logits, feats) in zip(PERIODS, out, strict=True):
        rows = _ceil_div(T, p)  # padded up to a whole period
        assert feats[0].shape == (B, _ceil_div(rows, 3), p, c)
        for _ in range(4):
            rows = _ceil_div(rows, 3)  # kernel 5, stride 3, padding 2
        assert logits.shape == (B, rows, p, 1)
        assert [f.shape[-1] for f in feats] == [c, 4 * c, 16 * c, 32 * c, 32 * c]
    _assert_finite(out)


def test_mpd_keeps_phases_of_the_period_apart(tiny):
    # Sample t belongs to column t % p; the (k, 1) kernels must never mix columns, so the
    # gradient of column j's logits is zero on every other phase (fails on a wrong fold).
    p, t = 7, 7 * 130
    module = D.PeriodDiscriminator(p, channels=WIDTH)
    variables = {"params": tiny[1]["params"]["mpd"][f"period_{p}"]}
    x = _audio(t)
    column_sums = lambda x_: module.apply(variables, x_)[0].sum(axis=(0, 1, 3))
    jac = jax.jit(jax.jacrev(column_sums))(x)[..., 0]  # [p, B, t]
    phase = np.arange(t) % p
    for col in range(p):
        assert float(jnp.abs(jac[col][:, phase != col]).max()) == 0.0
        assert float(jnp.abs(jac[col][:, phase == col]).max()) > 0.0


def test_msd_shapes(tiny):
    out, c = tiny[-1][len(PERIODS) : len(PERIODS) + len(RATES)], WIDTH // 2
    for r, (logits, feats) in zip(RATES, out, strict=True):
        n = _ceil_div(T, r)  # the input is decimated by the rate
        assert feats[0].shape == (B, n, c)
        for _ in range(4):
            n = _ceil_div(n, 4)  # kernel 41, stride 4, padding 20
        assert logits.shape == (B, n, 1)
        # MSD runs at half the width base, as DAC's 16 against 32.
        assert [f.shape[-1] for f in feats] == [c, 4 * c, 16 * c, 64 * c, 64 * c, 64 * c]
    _assert_finite(out)


def test_mrd_shapes(tiny):
    out, c = tiny[-1][len(PERIODS) + len(RATES) :], WIDTH
    assert len(out) == len(WINDOWS)
    for w, (logits, feats) in zip(WINDOWS, out, strict=True):
        frames, n_bins = _ceil_div(T, w // 4), w // 2 + 1
        width = 0
        for lo, hi in D.DEFAULT_BANDS:
            band = int(hi * n_bins) - int(lo * n_bins)
            for _ in range(3):
                band = _ceil_div(band, 2)  # kernel 9, stride 2 along frequency
            width += band
        assert logits.shape == (B, frames, width, 1)
        assert len(feats) == 5 * len(D.DEFAULT_BANDS)
        assert all(f.shape[:2] == (B, frames) and f.shape[-1] == c for f in feats)
    _assert_finite(out)


def test_band_bins_match_dac():
    # DAC, window 2048: int(fraction * 1025); the top band keeps the Nyquist bin.
    assert D.band_bins(2048, D.DEFAULT_BANDS) == [
        (0, 102),
        (102, 256),
        (256, 512),
        (512, 768),
        (768, 1025),
    ]
    with pytest.raises(ValueError):
        D.band_bins(8, D.DEFAULT_BANDS)


@pytest.mark.parametrize("t", [1000, 1003])
def test_stft_matches_audiotools_match_stride(t):
    # audiotools (DAC's MRD): reflect-pad (w-hop)/2 and the tail to a whole hop, centred
    # torch.stft with reflect padding, then drop 2 frames at each end.
    w, hop = 256, 64
    x = np.asarray(_audio(t)[..., 0], np.float64)
    pad, right = (w - hop) // 2, _ceil_div(t, hop) * hop - t
    xp = np.pad(x, ((0, 0), (pad, pad + right)), mode="reflect")
    ref = librosa.stft(xp, n_fft=w, hop_length=hop, window="hann", center=True, pad_mode="reflect")
    ref = np.swapaxes(ref[..., 2:-2], 1, 2)
    ours = np.asarray(D.stft(jnp.asarray(x, jnp.float32), w, hop))
    assert ours.shape == ref.shape == (B, _ceil_div(t, hop), w // 2 + 1)
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max())


def test_combined_order_counts_and_unknown_kind(tiny):
    _, variables, _, _, out = tiny
    assert [len(f) for _, f in out] == [5] * 2 + [6] * 2 + [25] * 2
    assert set(variables["params"]) == {"mpd", "msd", "mrd"}
    assert set(variables["params"]["mpd"]) == {f"period_{p}" for p in PERIODS}

    only_mrd = D.Discriminators(kinds=("mrd",), mrd_window_lengths=(128,), channels=1)
    shapes = jax.eval_shape(only_mrd.init, jax.random.key(0), _audio())
    assert set(shapes["params"]) == {"mrd"}

    with pytest.raises(ValueError, match="mpd.*msd.*mrd"):
        D.Discriminators(kinds=("mpd", "stft"))
    cfg = D.default_discriminator_config()
    cfg.kinds = ("bogus",)
    with pytest.raises(ValueError, match="bogus"):
        D.build_discriminators(cfg)


def test_gradients_wrt_input_finite_and_nonzero_for_every_subdiscriminator(tiny):
    module, variables, _, x, _ = tiny

    def per_output(x_):
        # Adversarial and feature-matching terms, one scalar per sub-discriminator.
        return jnp.stack(
            [
                jnp.mean(logits**2) + sum(jnp.mean(jnp.abs(f)) for f in feats)
                for logits, feats in module.apply(variables, x_)
            ]
        )

    jac = jax.jit(jax.jacrev(per_output))(x)
    assert jac.shape == (len(PERIODS) + len(RATES) + len(WINDOWS), *x.shape)
    assert bool(jnp.all(jnp.isfinite(jac)))
    assert all(float(jnp.abs(j).max()) > 0 for j in jac)


def test_input_normalisation_removes_gain_and_dc(tiny):
    module, variables, apply, x, out = tiny
    y = 2.5 * x + 0.05
    for (lx, _), (ly, _) in zip(out, apply(variables, y), strict=True):
        np.testing.assert_allclose(lx, ly, rtol=1e-4, atol=1e-5)
    # Without normalisation the same weights do see the gain (so the check above has teeth).
    raw = module.clone(normalize_input=False, periods=(2,), kinds=("mpd",))
    lx, ly = (raw.apply(variables, a)[0][0] for a in (x, y))
    assert not np.allclose(lx, ly, rtol=1e-3, atol=1e-4)


def test_weight_norm_is_scale_invariant_in_v(tiny):
    module = D.STFTDiscriminator(window_length=128, channels=WIDTH)
    variables = {"params": tiny[1]["params"]["mrd"]["window_128"]}
    x = tiny[3]
    params = variables["params"]["band0_conv0"]
    # At init g = |v| per output channel, so weights start at torch's default scale.
    np.testing.assert_allclose(
        params["weight_g"],
        np.sqrt((np.asarray(params["weight_v"]) ** 2).sum(axis=(0, 1, 2))),
        rtol=1e-6,
    )
    apply = jax.jit(module.apply)
    base = apply(variables, x)[0]
    scale = lambda name, f: jax.tree_util.tree_map_with_path(
        lambda path, a: a * f if path[-1].key == name else a, variables
    )
    np.testing.assert_allclose(apply(scale("weight_v", 3.0), x)[0], base, rtol=1e-4, atol=1e-6)
    assert not np.allclose(apply(scale("weight_g", 3.0), x)[0], base, rtol=1e-3)


def test_bfloat16_compute_keeps_float32_params(tiny):
    module, variables, _, x, out32 = tiny
    # One sub-discriminator per kind keeps the compile short; params do not depend on dtype.
    module = module.clone(
        periods=(2,), msd_rates=(4,), mrd_window_lengths=(128,), dtype=jnp.bfloat16
    )
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    assert {p.dtype for p in jax.tree_util.tree_leaves(shapes)} == {jnp.dtype(jnp.float32)}
    out = jax.jit(module.apply)(variables, x)
    assert all(logits.dtype == jnp.bfloat16 for logits, _ in out)
    _assert_finite(out)
    # Same function up to bf16 rounding: compare MPD period 2 with its float32 logits.
    np.testing.assert_allclose(
        np.asarray(out[0][0], np.float32),
        out32[0][0],
        atol=0.05 * float(jnp.abs(out32[0][0]).max()),
    )


def _dac_conv_params(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    # torch weight_norm(dim=0) conv: weight_v, weight_g [cout], bias [cout].
    return cout * (cin // groups) * kernel + 2 * cout


def test_param_counts_match_dac_at_default_width():
    # Layer tables of DAC's dac/model/discriminator.py (channels, kernel area, groups).
    mpd_layers = [(1, 32), (32, 128), (128, 512), (512, 1024), (1024, 1024)]
    mpd = sum(_dac_conv_params(i, o, 5) for i, o in mpd_layers) + _dac_conv_params(1024, 1, 3)
    msd_layers = [(1, 16, 15, 1), (16, 64, 41, 4), (64, 256, 41, 16), (256, 1024, 41, 64)]
    msd_layers += [(1024, 1024, 41, 256), (1024, 1024, 5, 1), (1024, 1, 3, 1)]
    msd = sum(_dac_conv_params(*layer) for layer in msd_layers)
    band = (
        _dac_conv_params(2, 32, 27) + 3 * _dac_conv_params(32, 32, 27) + _dac_conv_params(32, 32, 9)
    )
    mrd = 5 * band + _dac_conv_params(32, 1, 9)
    expected = {"mpd": 5 * mpd, "msd": 3 * msd, "mrd": 3 * mrd}

    cfg = D.default_discriminator_config()
    x = jax.ShapeDtypeStruct((1, 44100, 1), jnp.float32)
    params = jax.eval_shape(D.build_discriminators(cfg).init, jax.random.key(0), x)["params"]
    counts = {kind: D.count_params(params[kind]) for kind in cfg.kinds}
    out = jax.eval_shape(D.build_discriminators(cfg).apply, {"params": params}, x)
    assert [len(feats) for _, feats in out] == [5] * 5 + [6] * 3 + [25] * 3
    print("discriminator params at default width:", counts, "total", sum(counts.values()))
    assert counts == expected
    # Literal anchors, so a shared slip in the table above cannot hide: DAC's default
    # discriminator (MPD + MRD, no MSD) has 42,519,760 parameters, 41,105,770 of them MPD's.
    assert counts["mpd"] == 41_105_770
    assert counts["mpd"] + counts["mrd"] == 42_519_760


def test_period_conv_as_1d_equals_the_2d_conv(kernel_mode):
    """MPD's (k, 1) convs run as 1D convs over folded phases: same outputs and gradients as
    the 2D convolution they stand for."""
    conv = D._WNConv(6, (5, 1), (3, 1))
    x = jax.random.normal(jax.random.key(0), (2, 40, 3, 4))
    params = conv.init(jax.random.key(1), x)

    def as_2d(params, x):
        p = params["params"]
        v, g = p["weight_v"], p["weight_g"]
        w = v * (g / jnp.sqrt(jnp.sum(v**2, axis=(0, 1, 2))))
        y = jax.lax.conv_general_dilated(
            x, w, (3, 1), ((2, 2), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + p["bias"]

    np.testing.assert_allclose(conv.apply(params, x), as_2d(params, x), rtol=1e-5, atol=1e-6)
    g = jax.random.normal(jax.random.key(2), as_2d(params, x).shape)
    ours = jax.grad(lambda p, x: jnp.sum(conv.apply(p, x) * g), (0, 1))(params, x)
    ref = jax.grad(lambda p, x: jnp.sum(as_2d(p, x) * g), (0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
