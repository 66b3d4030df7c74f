"""Hand-written kernels (`jax_codec.models.kernels`): each against plain JAX ops or float64,
on both paths of the backend switch (`JAX_CODEC_KERNELS=custom|reference`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_codec.models import kernels
from jax_codec.models.kernels import (
    depthwise_conv1d,
    grouped_conv1d,
    sin_squared,
    snake,
    weight_norm_custom,
)


def test_switch_follows_the_backend_and_the_environment(monkeypatch):
    monkeypatch.delenv(kernels.KERNELS_ENV, raising=False)
    assert kernels.use_custom_kernels() == (jax.default_backend() == "cpu")
    for mode, want in (("custom", True), ("reference", False), ("AUTO", True)):
        monkeypatch.setenv(kernels.KERNELS_ENV, mode)
        assert kernels.use_custom_kernels() is want
        with kernels.kernels_mode("reference" if want else "custom"):  # overrides it
            assert kernels.use_custom_kernels() is not want
        assert kernels.use_custom_kernels() is want
    monkeypatch.setenv(kernels.KERNELS_ENV, "fast")
    with pytest.raises(ValueError, match="JAX_CODEC_KERNELS='fast': use one of auto, custom"):
        kernels.use_custom_kernels()
    with pytest.raises(ValueError, match="kernels_mode.'auto'.: use custom or reference"):
        kernels.kernels_mode("auto").__enter__()


@pytest.mark.parametrize("mode,custom", [("custom", True), ("reference", False)])
def test_switch_chooses_the_traced_kernel(monkeypatch, mode, custom):
    monkeypatch.setenv(kernels.KERNELS_ENV, mode)
    x, a = jnp.ones((1, 4, 2)), jnp.ones((2,))
    # Fresh lambdas: JAX caches traces by function, and the switch is read when tracing.
    assert ("custom_vjp_call" in str(jax.make_jaxpr(lambda x: snake(x, a))(x))) is custom
    jaxpr = str(jax.make_jaxpr(lambda x: kernels.transposed_conv(x, jnp.ones((4, 2, 3)), 2))(x))
    assert ("conv_general_dilated" in jaxpr) is not custom


def _agree(f_custom, f_reference, *args, rtol=1e-5, atol=1e-5):
    """Same values and same gradients (of a random projection) for both implementations."""
    want = jax.jit(f_reference)(*args)
    np.testing.assert_allclose(jax.jit(f_custom)(*args), want, rtol=rtol, atol=atol)
    ct = jax.random.normal(jax.random.key(7), want.shape)
    argnums = tuple(range(len(args)))
    ours = jax.jit(jax.grad(lambda *a: jnp.sum(f_custom(*a) * ct), argnums))(*args)
    ref = jax.jit(jax.grad(lambda *a: jnp.sum(f_reference(*a) * ct), argnums))(*args)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=10 * rtol, atol=10 * atol)


def test_custom_kernels_equal_their_references():
    keys = jax.random.split(jax.random.key(0), 8)
    x = jax.random.normal(keys[0], (2, 37, 6))
    v = jax.random.normal(keys[1], (7, 6, 5))
    _agree(kernels.weight_norm_custom, kernels.weight_norm_reference, v, jnp.arange(1.0, 6.0))
    g_in = jax.random.normal(keys[2], (1, 6, 1))
    _agree(kernels.weight_norm_custom, kernels.weight_norm_reference, v, g_in)
    dw = jax.random.normal(keys[3], (7, 1, 6))
    for dilation, pad in ((1, (6, 0)), (3, (9, 9))):
        _agree(
            lambda x, w, d=dilation, p=pad: kernels.depthwise_conv1d_custom(x, w, d, p),
            lambda x, w, d=dilation, p=pad: kernels.depthwise_conv1d_reference(x, w, d, p),
            x,
            dw,
        )
    gw = jax.random.normal(keys[4], (5, 2, 9))
    _agree(
        lambda x, w: kernels.grouped_conv1d_custom(x, w, 2, (2, 2), 3),
        lambda x, w: kernels.grouped_conv1d_reference(x, w, 2, (2, 2), 3),
        x,
        gw,
    )
    x4 = jax.random.normal(keys[5], (2, 19, 3, 4))
    pw = jax.random.normal(keys[6], (5, 1, 4, 6))
    _agree(
        lambda x, w: kernels.period_conv2d_custom(x, w, 3, (2, 2), jnp.float32),
        lambda x, w: kernels.period_conv2d_reference(x, w, 3, (2, 2), jnp.float32),
        x4,
        pw,
    )
    for k, stride in ((4, 2), (7, 3), (16, 8), (3, 3), (2, 5)):
        tw = jax.random.normal(keys[7], (k, 6, 4))
        _agree(
            lambda x, w, s=stride: kernels.transposed_conv_custom(x, w, s),
            lambda x, w, s=stride: kernels.transposed_conv_reference(x, w, s),
            x,
            tw,
            atol=1e-4,
        )
        # The same with the kernel in the `[Cin, k, Cout]` layout of folded inference weights.
        _agree(
            lambda x, w, s=stride: kernels.transposed_conv_io(x, jnp.transpose(w, (1, 0, 2)), s),
            lambda x, w, s=stride: kernels.transposed_conv_reference(x, w, s),
            x,
            tw,
            atol=1e-4,
        )
    u = jnp.linspace(-40.0, 40.0, 4001)
    _agree(kernels.sin_squared_custom, kernels.sin_squared_reference, u, atol=1e-6)
    alpha = jnp.array([1.0, 0.5, 2.0, 1.3, 0.05, 7.0])
    _agree(kernels.snake_custom, kernels.snake_reference, x * 3.0, alpha, rtol=1e-4, atol=1e-4)


def test_lstm_recurrence_equals_its_reference():
    """Same hidden states bit for bit (the codes of an imported EnCodec depend on them), and
    the written-out backward's gradients for the input gates, W_hh and b_hh."""
    keys = jax.random.split(jax.random.key(1), 3)
    x_gates = jax.random.normal(keys[0], (9, 2, 4 * 5)) * 2.0
    w_hh = jax.random.normal(keys[1], (5, 4 * 5)) * 0.5
    b_hh = jax.random.normal(keys[2], (4 * 5,))
    _agree(kernels.lstm_recurrence_custom, kernels.lstm_recurrence_reference, x_gates, w_hh, b_hh)
    np.testing.assert_array_equal(
        jax.jit(kernels.lstm_recurrence_custom)(x_gates, w_hh, b_hh),
        jax.jit(kernels.lstm_recurrence_reference)(x_gates, w_hh, b_hh),
    )


def test_elu_matches_float64(kernel_mode):
    """Values within 2e-7 of float64's expm1 (|ELU| < 1 on the negative side), slope 1 for
    x > 0 and exp(x) for x <= 0 (1 at 0, as autodiff of jax.nn.elu gives)."""
    x = jnp.concatenate([jnp.linspace(-20.0, 5.0, 5001), jnp.array([-1e-30, 0.0, 1e-30])])
    xd = np.asarray(x, np.float64)
    want = np.where(xd > 0, xd, np.expm1(np.minimum(xd, 0.0)))
    np.testing.assert_allclose(jax.jit(kernels.elu)(x), want, rtol=2e-7, atol=2e-7)
    slope = jax.jit(jax.vmap(jax.grad(kernels.elu)))(x)
    np.testing.assert_allclose(
        slope, np.where(xd > 0, 1.0, np.exp(np.minimum(xd, 0.0))), rtol=1e-6, atol=1e-7
    )


def test_argmin_and_argmax_equal_numpys():
    """First index on ties, a NaN wins (numpy's and jnp's rule), on both paths."""
    rows = np.array(
        [
            [3.0, 1.0, 1.0, 2.0],
            [0.0, -0.0, 5.0, -1.0],
            [2.0, np.nan, -4.0, np.nan],
            [np.inf, np.inf, np.inf, np.inf],
            [-np.inf, 7.0, -np.inf, 0.0],
        ],
        np.float32,
    )
    rng = np.random.default_rng(0)
    rows = np.concatenate([rows, rng.integers(-3, 3, (40, 4)).astype(np.float32)])
    for argmin in (kernels.argmin_custom, kernels.argmin_reference):
        np.testing.assert_array_equal(jax.jit(argmin)(rows), np.argmin(rows, axis=-1))
        np.testing.assert_array_equal(jax.jit(argmin)(-rows), np.argmax(rows, axis=-1))
    assert kernels.argmax(jnp.asarray(rows)).dtype == jnp.int32


def test_codec_is_the_same_on_both_paths(runlocal_codec, monkeypatch):
    """The whole runlocal codec (Snake, weight norm, transposed convs), custom vs reference."""
    codec, params = runlocal_codec
    x = jax.random.normal(jax.random.key(3), (1, codec.length_multiple, 1)) * 0.3

    def run(mode):
        monkeypatch.setenv(kernels.KERNELS_ENV, mode)
        return jax.jit(lambda p, x: codec.apply(p, x).audio)(params, x)

    np.testing.assert_allclose(run("custom"), run("reference"), rtol=1e-4, atol=1e-6)


def test_sin_squared_matches_float64(kernel_mode):
    u = np.concatenate([np.linspace(-60.0, 60.0, 200_001), [0.0, np.pi / 2, 1e4, -3e4]])
    got = np.asarray(sin_squared(jnp.asarray(u, jnp.float32)), np.float64)
    want = np.sin(u.astype(np.float32).astype(np.float64)) ** 2
    assert np.abs(got - want).max() < 1e-6
    # Bounded where the argument is too large for the reduction, NaN stays NaN.
    big = np.asarray(sin_squared(jnp.asarray([1e9, -3e12, np.nan], jnp.float32)))
    assert np.all((big[:2] >= 0) & (big[:2] <= 1)) and np.isnan(big[2])
    # The gradient is that of sin^2: sin(2u).
    # (Against float64 of the float32 arguments, as above.)
    v = jnp.linspace(-5.0, 5.0, 101)
    g = jax.vmap(jax.grad(lambda x: sin_squared(x)))(v)
    want = np.sin(2 * np.asarray(v, np.float64))
    np.testing.assert_allclose(g, want, atol=2e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_snake_gradient_matches_float64(dtype, kernel_mode):
    """The hand-written Snake backward (sin(2 alpha x), alpha's gradient as a ones-matmul)."""
    rng = np.random.default_rng(0)
    scale = np.array([0.1, 1.0, 3.0, 10.0, 30.0, 1.0, 1.0, 0.3])
    x = (rng.normal(size=(2, 500, 8)) * scale).astype(np.float32)
    a = np.array([1.0, 0.5, 2.0, 1.3, 0.05, 7.0, 1e-3, 1.0], np.float32)
    w = rng.normal(size=x.shape).astype(np.float32)
    xd, ad = jnp.asarray(x, dtype), jnp.asarray(a, dtype)
    y, (gx, ga) = jax.value_and_grad(
        lambda x, a: jnp.sum(snake(x, a).astype(jnp.float32) * w), (0, 1)
    )(xd, ad)
    assert gx.dtype == dtype and ga.dtype == dtype and gx.shape == x.shape and ga.shape == a.shape
    x64, a64, w64 = (np.asarray(jnp.asarray(v, dtype), np.float64) for v in (x, a, w))
    inv = 1.0 / (a64 + 1e-9)
    s2 = np.sin(2 * a64 * x64)
    want_y = np.sum((x64 + np.sin(a64 * x64) ** 2 * inv) * w64)
    want_gx = w64 * (1.0 + s2)
    want_ga = (w64 * (x64 * s2 * inv - np.sin(a64 * x64) ** 2 * inv**2)).sum((0, 1))
    tol = 1e-3 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(float(y), want_y, rtol=tol)
    np.testing.assert_allclose(np.asarray(gx, np.float64), want_gx, atol=tol * 10, rtol=tol)
    np.testing.assert_allclose(
        np.asarray(ga, np.float64), want_ga, rtol=tol, atol=tol * np.abs(want_ga).max()
    )


@pytest.mark.parametrize(
    "k,dilation,pad",
    [(7, 1, (6, 0)), (7, 3, (9, 9)), (7, 9, (54, 0)), (3, 2, (1, 3)), (7, 1, (0, 0))],
)
def test_depthwise_conv_matches_grouped_conv_and_its_gradients(k, dilation, pad, kernel_mode):
    """The shifted-sum depthwise conv (and its hand-written backward) equals XLA's grouped conv."""

    def grouped(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            (1,),
            (pad,),
            rhs_dilation=(dilation,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            feature_group_count=x.shape[-1],
        )

    kx, kw, kg = jax.random.split(jax.random.key(k * 100 + dilation), 3)
    x = jax.random.normal(kx, (2, 50, 6))
    w = jax.random.normal(kw, (k, 1, 6))
    want = grouped(x, w)
    np.testing.assert_allclose(depthwise_conv1d(x, w, dilation, pad), want, atol=1e-5)
    g = jax.random.normal(kg, want.shape)
    ours = jax.grad(lambda x, w: jnp.sum(depthwise_conv1d(x, w, dilation, pad) * g), (0, 1))(x, w)
    ref = jax.grad(lambda x, w: jnp.sum(grouped(x, w) * g), (0, 1))(x, w)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("v_shape,g_shape", [((7, 5, 6), (6,)), ((7, 5, 6), (1, 5, 1))])
def test_weight_norm_gradient_matches_autodiff(v_shape, g_shape):
    """`weight_norm_custom`'s written-out backward equals autodiff of g v / max(|v|, eps), for both
    norm axes (per output channel; per input channel as torch's ConvTranspose1d), and stays
    finite for an all-zero channel (autodiff's sqrt gives NaN there)."""

    def plain(v, g):
        axes = tuple(range(v.ndim - 1)) if g.ndim == 1 else (0, 2)
        norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))
        return v * (jnp.reshape(g, norm.shape) / jnp.maximum(norm, 1e-12))

    rng = np.random.default_rng(3)
    v = jnp.asarray(rng.normal(size=v_shape), jnp.float32)
    g = jnp.asarray(rng.normal(size=g_shape), jnp.float32)
    ct = jnp.asarray(rng.normal(size=v_shape), jnp.float32)
    np.testing.assert_array_equal(weight_norm_custom(v, g), plain(v, g))
    ours = jax.vjp(weight_norm_custom, v, g)[1](ct)
    ref = jax.vjp(plain, v, g)[1](ct)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # An all-zero channel: the norm is clamped, so v's gradient there is g ct / eps.
    if g.ndim == 1:
        v0 = v.at[..., 0].set(0.0)
        dv, dg = jax.vjp(weight_norm_custom, v0, g)[1](ct)
        assert np.all(np.isfinite(dv)) and np.all(np.isfinite(dg))
        np.testing.assert_allclose(dv[..., 0], g[0] * ct[..., 0] / 1e-12, rtol=1e-5)
        np.testing.assert_allclose(dv[..., 1:], ref[0][..., 1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride,groups,k", [(4, 4, 41), (1, 2, 5), (3, 3, 7)])
def test_grouped_conv_gradients_match_xla(stride, groups, k, kernel_mode):
    """`grouped_conv1d` (MSD's convs): XLA's conv forward, our weight gradient, same numbers."""

    pad = (k // 2, k // 2)

    def xla(x, w):
        return jax.lax.conv_general_dilated(
            x,
            w,
            (stride,),
            (pad,),
            dimension_numbers=("NWC", "WIO", "NWC"),
            feature_group_count=groups,
        )

    kx, kw, kg = jax.random.split(jax.random.key(stride * 10 + groups), 3)
    x = jax.random.normal(kx, (2, 67, 4 * groups))
    w = jax.random.normal(kw, (k, 4, 8 * groups))
    want = xla(x, w)
    np.testing.assert_allclose(grouped_conv1d(x, w, stride, pad, groups), want, rtol=1e-6)
    g = jax.random.normal(kg, want.shape)
    ours = jax.grad(lambda x, w: jnp.sum(grouped_conv1d(x, w, stride, pad, groups) * g), (0, 1))
    ref = jax.grad(lambda x, w: jnp.sum(xla(x, w) * g), (0, 1))
    for a, b in zip(ours(x, w), ref(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
