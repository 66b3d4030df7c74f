"""Hand-written fast paths (for XLA:CPU), each beside the plain JAX op it stands for.

Every kernel here computes the same numbers as its reference (`*_reference`, plain `jax.lax` /
`jnp` ops differentiated by autodiff), and `tests/test_kernels.py` checks each pair, values
and gradients. Which one runs is chosen when a function is traced, by `use_custom_kernels()`:
the hand-written ones on CPU, where they were measured faster (benchmarks/README.md), the
plain ones on GPU and TPU, where nobody measured them. The environment variable
`JAX_CODEC_KERNELS=custom|reference|auto` (default auto) overrides the choice.

Shapes are channels-last `[B, T, C]`; conv kernels are `[k, Cin / groups, Cout]`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

KERNELS_ENV = "JAX_CODEC_KERNELS"
_MODES = ("auto", "custom", "reference")
_DIMS = ("NWC", "WIO", "NWC")


_FORCED: contextvars.ContextVar[str | None] = contextvars.ContextVar("kernels", default=None)


@contextlib.contextmanager
def kernels_mode(mode: str):
    """Functions traced inside use `mode` ("custom" or "reference") whatever the environment
    says: an export to another runtime (ONNX, LiteRT) wants the plain ops, which its
    converters map to that runtime's own convolutions."""
    if mode not in _MODES[1:]:
        raise ValueError(f"kernels_mode({mode!r}): use custom or reference")
    token = _FORCED.set(mode)
    try:
        yield
    finally:
        _FORCED.reset(token)


def use_custom_kernels() -> bool:
    """True where the hand-written kernels run: `JAX_CODEC_KERNELS=custom`, or `auto` (the
    default) on the CPU backend; inside `kernels_mode`, its mode. Read at trace time, so set
    it before a function is jitted."""
    mode = _FORCED.get() or os.environ.get(KERNELS_ENV, "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise ValueError(f"{KERNELS_ENV}={mode!r}: use one of {', '.join(_MODES)}")
    if mode == "auto":
        return jax.default_backend() == "cpu"
    return mode == "custom"


# ---- weight norm: g v / |v| ----


def _norm_axes(v: Array, g: Array) -> tuple[int, ...]:
    if g.ndim == 1:
        return tuple(range(v.ndim - 1))
    return tuple(i for i in range(v.ndim) if g.shape[i] == 1)


def _weight_norm_parts(v: Array, g: Array) -> tuple[Array, Array]:
    """(|v| per channel with keepdims, g / max(|v|, 1e-12) in that shape)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=_norm_axes(v, g), keepdims=True))
    return norm, jnp.reshape(g, norm.shape) / jnp.maximum(norm, 1e-12)


def weight_norm(v: Array, g: Array) -> Array:
    """g v / max(|v|, 1e-12), the norm taken per channel of the axis that `g` spans.

    `g` `[features]` (the usual case): one norm per output channel (last axis), as torch's
    weight_norm(dim=0) on a Conv1d. `g` with `v`'s rank (e.g. `[1, Cin, 1]`): one norm per
    entry of the axes where g's size is not 1, i.e. over the axes where it is 1; torch's
    weight_norm(dim=0) on a ConvTranspose1d normalises per *input* channel that way.
    """
    if use_custom_kernels():
        return weight_norm_custom(v, g)
    return weight_norm_reference(v, g)


def weight_norm_reference(v: Array, g: Array) -> Array:
    """`weight_norm`'s value, differentiated by autodiff (its gradient is NaN for an all-zero
    channel of `v`, where the custom backward is finite)."""
    return v * _weight_norm_parts(v, g)[1]


@jax.custom_vjp
def weight_norm_custom(v: Array, g: Array) -> Array:
    """`weight_norm` with a written-out backward: one reduction and one elementwise pass,
    where autodiff leaves several tiny per-channel kernels per conv, each compiled apart."""
    return weight_norm_reference(v, g)


def _weight_norm_fwd(v: Array, g: Array):
    norm, scale = _weight_norm_parts(v, g)
    return v * scale, (v, g, norm, scale)


def _weight_norm_bwd(res, dw):
    v, g, norm, scale = res
    axes = _norm_axes(v, g)
    # w = v g / m with m = max(|v|, eps): dg = sum(dw v) / m, and through m (where |v| > eps)
    # dv = g dw / m - v g sum(dw v) / |v|^3.
    dot = jnp.sum(dw * v, axis=axes, keepdims=True)
    m = jnp.maximum(norm, 1e-12)
    dg = jnp.reshape(dot / m, g.shape)
    coef = jnp.where(norm > 1e-12, scale * dot / jnp.square(m), 0.0)
    return (scale * dw - v * coef).astype(v.dtype), dg.astype(g.dtype)


weight_norm_custom.defvjp(_weight_norm_fwd, _weight_norm_bwd)


# ---- depthwise conv (groups = channels, stride 1) ----


def depthwise_conv1d(x: Array, w: Array, dilation: int, pad: tuple[int, int]) -> Array:
    """Depthwise (groups = channels) stride-1 conv: `[B, T, C]`, `w` `[k, 1, C]` ->
    `[B, T + pad[0] + pad[1] - (k - 1) dilation, C]`; `y[t] = sum_i xp[t + i dilation] w[i]`."""
    if use_custom_kernels():
        return depthwise_conv1d_custom(x, w, dilation, pad)
    return depthwise_conv1d_reference(x, w, dilation, pad)


def depthwise_conv1d_reference(x: Array, w: Array, dilation: int, pad: tuple[int, int]) -> Array:
    return jax.lax.conv_general_dilated(
        x,
        w,
        (1,),
        (tuple(pad),),
        rhs_dilation=(dilation,),
        dimension_numbers=_DIMS,
        feature_group_count=x.shape[-1],
    )


def depthwise_conv1d_custom(x: Array, w: Array, dilation: int, pad: tuple[int, int]) -> Array:
    """k shifted multiply-adds in one fused loop, because XLA:CPU's grouped convolution is
    much slower (SNAC's k=7 residual units); the backward is written out, as autodiff of the
    shifted sums reduces over time once per tap: the input gradient is the same shifted sum
    with the taps reversed, the kernel gradient one reduction per tap."""
    return _depthwise(x, w, dilation, tuple(pad))


def _depthwise_sum(xp: Array, w: Array, dilation: int, n: int) -> Array:
    return sum(xp[:, i * dilation : i * dilation + n] * w[i, 0] for i in range(w.shape[0]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(x: Array, w: Array, dilation: int, pad: tuple[int, int]) -> Array:
    xp = jnp.pad(x, ((0, 0), pad, (0, 0)))
    n = xp.shape[1] - (w.shape[0] - 1) * dilation
    return _depthwise_sum(xp, w, dilation, n)


def _depthwise_fwd(x, w, dilation, pad):
    return _depthwise(x, w, dilation, pad), (x, w)


def _depthwise_bwd(dilation, pad, res, g):
    x, w = res
    k, span = w.shape[0], (w.shape[0] - 1) * dilation
    n = g.shape[1]
    # d xp[u] = sum_i g[u - i d] w[i]: g zero-padded by the span, taps reversed.
    gp = jnp.pad(g, ((0, 0), (span, span), (0, 0)))
    gxp = _depthwise_sum(gp, w[::-1], dilation, n + span)
    gx = gxp[:, pad[0] : pad[0] + x.shape[1]]
    xp = jnp.pad(x, ((0, 0), pad, (0, 0)))

    # d w[i] = sum_{b,t} xp[b, t + i d] g[b, t], one tap per scan step: as k unrolled
    # reductions, XLA:CPU scheduled them with far more live temporaries, and ran slower.
    def tap(carry, i):
        xi = jax.lax.dynamic_slice_in_dim(xp, i * dilation, n, axis=1)
        return carry, jnp.sum((xi * g).astype(jnp.float32), axis=(0, 1))

    _, gw = jax.lax.scan(tap, None, jnp.arange(k))
    return gx.astype(x.dtype), gw[:, None, :].astype(w.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


# ---- grouped conv ----


def grouped_conv1d(x: Array, w: Array, stride: int, pad: tuple[int, int], groups: int) -> Array:
    """Grouped 1D conv, `[B, T, Cin]`, `w` `[k, Cin / groups, Cout]` -> `[B, T', Cout]`."""
    if use_custom_kernels():
        return grouped_conv1d_custom(x, w, stride, pad, groups)
    return grouped_conv1d_reference(x, w, stride, pad, groups)


def grouped_conv1d_reference(
    x: Array, w: Array, stride: int, pad: tuple[int, int], groups: int
) -> Array:
    return jax.lax.conv_general_dilated(
        x, w, (stride,), (tuple(pad),), dimension_numbers=_DIMS, feature_group_count=groups
    )


def grouped_conv1d_custom(
    x: Array, w: Array, stride: int, pad: tuple[int, int], groups: int
) -> Array:
    """XLA's forward and input gradient, but the weight gradient as a batched matmul over
    input patches, because XLA:CPU's weight gradient of a many-group conv (MelGAN's MSD, 4
    channels per group) is much slower than that contraction."""
    return _grouped(x, w, stride, tuple(pad), groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _grouped(x, w, stride, pad, groups):
    return grouped_conv1d_reference(x, w, stride, pad, groups)


def _grouped_fwd(x, w, stride, pad, groups):
    return grouped_conv1d_reference(x, w, stride, pad, groups), (x, w)


def _grouped_bwd(stride, pad, groups, res, g):
    x, w = res
    _, x_vjp = jax.vjp(lambda x_: grouped_conv1d_reference(x_, w, stride, pad, groups), x)
    (gx,) = x_vjp(g)
    k, cin_g, cout = w.shape
    b, n = g.shape[0], g.shape[1]
    xp = jnp.pad(x, ((0, 0), pad, (0, 0)))
    # Input patches [B, n, k, groups, Cin/groups]: tap j of output t is xp[t * stride + j].
    # One gather rather than k strided slices stacked: the same values, but one kernel instead
    # of k (41 for MSD's layers; kernels cost XLA compile time).
    taps = np.arange(n)[:, None] * stride + np.arange(k)[None, :]
    patches = jnp.take(xp, taps, axis=1, mode="clip").reshape(b, n, k, groups, cin_g)
    gw = jnp.einsum(
        "bnkgi,bngo->kigo",
        patches,
        g.reshape(b, n, groups, cout // groups),
        preferred_element_type=jnp.float32,
    )
    return gx.astype(x.dtype), gw.reshape(k, cin_g, cout).astype(w.dtype)


_grouped.defvjp(_grouped_fwd, _grouped_bwd)


# ---- MPD's (k, 1) convs ----


def period_conv2d(x: Array, w: Array, stride: int, pad: tuple[int, int], dtype: jnp.dtype) -> Array:
    """MPD's conv with a `(k, 1)` kernel: `x` `[B, H, P, Cin]` (P period phases), `w`
    `[k, 1, Cin, Cout]`, stride `(stride, 1)` -> `[B, H', P, Cout]`, in `dtype`."""
    if use_custom_kernels():
        return period_conv2d_custom(x, w, stride, pad, dtype)
    return period_conv2d_reference(x, w, stride, pad, dtype)


def period_conv2d_reference(
    x: Array, w: Array, stride: int, pad: tuple[int, int], dtype: jnp.dtype
) -> Array:
    return jax.lax.conv_general_dilated(
        x.astype(dtype),
        w.astype(dtype),
        window_strides=(stride, 1),
        padding=(tuple(pad), (0, 0)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def period_conv2d_custom(
    x: Array, w: Array, stride: int, pad: tuple[int, int], dtype: jnp.dtype
) -> Array:
    """A 1D conv over the phases folded into the batch (a `(k, 1)` kernel never mixes them),
    because XLA:CPU runs that faster, forward and backward, than its 2D conv."""
    b, h, p, cin = x.shape
    xf = jnp.moveaxis(x.astype(dtype), 2, 1).reshape(b * p, h, cin)
    yf = jax.lax.conv_general_dilated(
        xf,
        w[:, 0].astype(dtype),
        window_strides=(stride,),
        padding=(tuple(pad),),
        dimension_numbers=_DIMS,
    )
    return jnp.moveaxis(yf.reshape(b, p, yf.shape[1], w.shape[-1]), 1, 2)


# ---- transposed conv ----


def transposed_conv(x: Array, w: Array, stride: int) -> Array:
    """Full transposed convolution: `out[t * stride + j] += x[t] @ w[j]`, `[B, F, Cin]` with
    `w` `[k, Cin, Cout]` -> `[B, (F - 1) * stride + k, Cout]` (torch's ConvTranspose1d, no
    padding)."""
    if use_custom_kernels():
        return transposed_conv_custom(x, w, stride)
    return transposed_conv_reference(x, w, stride)


def transposed_conv_io(x: Array, w_io: Array, stride: int) -> Array:
    """`transposed_conv` with the kernel given as `[Cin, k, Cout]` (`fold_weight_norm`'s
    layout for transposed convolutions): the custom kernel's matmul operand is then a
    reshape of it, where `[k, Cin, Cout]` needs a transposed copy of the whole kernel on every
    call (a streaming decoder step's largest op)."""
    if use_custom_kernels():
        return _transposed_conv_matmul(x, w_io, stride)
    return transposed_conv_reference(x, jnp.transpose(w_io, (1, 0, 2)), stride)


def transposed_conv_reference(x: Array, w: Array, stride: int) -> Array:
    """A convolution over the input dilated by `stride` with the kernel flipped."""
    k = w.shape[0]
    return jax.lax.conv_general_dilated(
        x,
        w[::-1],
        window_strides=(1,),
        padding=((k - 1, k - 1),),
        lhs_dilation=(stride,),
        dimension_numbers=_DIMS,
    )


def transposed_conv_custom(x: Array, w: Array, stride: int) -> Array:
    """One matmul `[B F, Cin] x [Cin, n stride Cout]` (the kernel zero-padded to
    `n = ceil(k / stride)` blocks of `stride` taps) and an overlap-add of the `n` blocks shifted
    by one frame each, because the dilated convolution multiplies by the inserted zeros and
    its gradients were far slower on XLA:CPU; here the gradients are matmuls too."""
    return _transposed_conv_matmul(x, jnp.transpose(w, (1, 0, 2)), stride)


def _transposed_conv_matmul(x: Array, w_io: Array, stride: int) -> Array:
    cin, k, cout = w_io.shape
    b, f, _ = x.shape
    n = -(-k // stride)
    wm = jnp.pad(w_io, ((0, 0), (0, n * stride - k), (0, 0))).reshape(cin, n * stride * cout)
    p = jnp.dot(x, wm).reshape(b, f, n, stride * cout)
    y = sum(jnp.pad(p[:, :, i], ((0, 0), (i, n - 1 - i), (0, 0))) for i in range(n))
    return y.reshape(b, (f + n - 1) * stride, cout)[:, : (f - 1) * stride + k]


# ---- sin^2 and Snake ----

# pi split in three float32 parts (Cody-Waite): k * _PI_A is exact for |k| < 2**11 and the
# reduced argument keeps float32 accuracy for |u| up to ~1e4.
_PI_A = 3.140625
_PI_B = float(np.float32(math.pi - _PI_A))
_PI_C = float(np.float32(math.pi - _PI_A - _PI_B))


def _reduce_mod_pi(u: Array) -> Array:
    """`u - k pi` in [-pi/2, pi/2] (float32): sin^2 and sin(2u) have period pi."""
    k = jnp.round(u * (1.0 / math.pi))
    r = ((u - k * _PI_A) - k * _PI_B) - k * _PI_C
    return jnp.clip(r, -math.pi / 2, math.pi / 2)  # bounded output even where |u| is too large


def _sin_poly(r: Array) -> Array:
    """sin(r) on [-pi/2, pi/2]: odd degree-11 Taylor polynomial, error < 6e-8."""
    r2 = r * r
    return r * (
        1.0
        + r2
        * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880 - r2 / 39916800))))
    )


def _cos_poly(r: Array) -> Array:
    """cos(r) on [-pi/2, pi/2]: even degree-12 Taylor polynomial, error < 7e-9."""
    r2 = r * r
    c = 1.0 / 479001600
    for n in (10, 8, 6, 4, 2):
        c = (-1.0) ** (n // 2) / math.factorial(n) + r2 * c
    return 1.0 + r2 * c


def sin_squared(u: Array) -> Array:
    """sin(u)^2, computed in float32 whatever the input dtype (a bfloat16 reduction would lose
    the phase), returned in u's dtype."""
    if use_custom_kernels():
        return sin_squared_custom(u)
    return sin_squared_reference(u)


def sin_squared_reference(u: Array) -> Array:
    return jnp.square(jnp.sin(u.astype(jnp.float32))).astype(u.dtype)


def sin_squared_custom(u: Array) -> Array:
    """One reduction to r in [-pi/2, pi/2] (sin^2 has period pi, so no quadrant bookkeeping)
    and an odd degree-11 polynomial, because XLA:CPU does not vectorize `jnp.sin` as well and
    the Snake activations are a large share of a streaming step. Max abs error against
    float64 is 4e-7 (jnp.sin: 1e-7)."""
    s = _sin_poly(_reduce_mod_pi(u.astype(jnp.float32)))
    return (s * s).astype(u.dtype)


def snake(x: Array, alpha: Array) -> Array:
    """Snake `x + sin^2(alpha x) / alpha` (DAC's `x + (alpha + 1e-9)^-1 sin^2(alpha x)`),
    alpha `[C]`; alpha x is taken in float32 whatever the compute dtype (in bfloat16 its
    phase error at |alpha x| ~ 10 would be ~0.05 rad)."""
    if use_custom_kernels():
        return snake_custom(x, alpha)
    return snake_reference(x, alpha)


def _snake_value(x: Array, alpha: Array, sin2) -> Array:
    u = alpha.astype(jnp.float32) * x.astype(jnp.float32)
    return x + (sin2(u) * (1.0 / (alpha.astype(jnp.float32) + 1e-9))).astype(x.dtype)


def snake_reference(x: Array, alpha: Array) -> Array:
    return _snake_value(x, alpha, sin_squared_reference)


@jax.custom_vjp
def snake_custom(x: Array, alpha: Array) -> Array:
    """`sin_squared_custom` forward; the backward is written out, from the saved `x` and
    alpha: `sin(2 alpha x) = 2 sin cos` with one shared range reduction, and alpha's gradient
    as a matmul with a ones vector, because autodiff of the polynomial kept several full-size
    intermediates alive and XLA:CPU reduced alpha's gradient in a slow column reduction."""
    return _snake_value(x, alpha, sin_squared_custom)


def _snake_fwd(x, alpha):
    return _snake_value(x, alpha, sin_squared_custom), (x, alpha)


def _snake_bwd(res, g):
    x, alpha = res
    xf, af, gf = x.astype(jnp.float32), alpha.astype(jnp.float32), g.astype(jnp.float32)
    inv = 1.0 / (af + 1e-9)
    r = _reduce_mod_pi(af * xf)
    s = _sin_poly(r)
    sin2 = 2.0 * s * _cos_poly(r)  # sin(2 alpha x)
    gx = gf * (1.0 + sin2)
    # d/d alpha [sin^2(alpha x) / alpha] = x sin(2 alpha x) / alpha - sin^2(alpha x) / alpha^2
    h = (gf * (xf * sin2 - (s * s) * inv) * inv).reshape(-1, x.shape[-1])
    # A matmul with ones, not jnp.sum, which was no faster than autodiff's backward. The
    # barrier hides the constant ones, so that XLA cannot fold the dot back into a reduction.
    ones = jax.lax.optimization_barrier(jnp.ones((h.shape[0],), jnp.float32))
    ga = jnp.matmul(ones, h, precision=jax.lax.Precision.HIGHEST)  # f32 on TPU/GPU too
    return gx.astype(x.dtype), ga.astype(alpha.dtype)


snake_custom.defvjp(_snake_fwd, _snake_bwd)


# ---- ELU ----


def elu(x: Array) -> Array:
    """ELU with alpha 1: `x` where positive, `exp(x) - 1` elsewhere."""
    if use_custom_kernels():
        return elu_custom(x)
    return elu_reference(x)


def elu_reference(x: Array) -> Array:
    return jax.nn.elu(x)


def elu_custom(x: Array) -> Array:
    """`exp(x) - 1` on the negative side instead of `expm1`, because XLA:CPU's expm1 took
    twice as long as exp (SEANet applies ELU before every conv); exp(x) - 1 is within
    6e-8 of expm1 in float32 there (|exp(x) - 1| < 1), and autodiff gives exp(x) as the slope."""
    return jnp.where(x > 0, x, jnp.exp(jnp.where(x > 0, 0.0, x)) - 1.0)


# ---- argmin / argmax over the last axis ----


def argmin(x: Array) -> Array:
    """Index of the first minimum along the last axis, int32 (jnp.argmin's: a NaN counts as
    the minimum, its first index wins)."""
    if use_custom_kernels():
        return argmin_custom(x)
    return argmin_reference(x)


def argmax(x: Array) -> Array:
    """Index of the first maximum along the last axis, int32 (jnp.argmax's, NaN included)."""
    return argmin(-x)


def argmin_reference(x: Array) -> Array:
    return jnp.argmin(x, axis=-1).astype(jnp.int32)


def argmin_custom(x: Array) -> Array:
    """A min, then the smallest index where it is reached (or a NaN is), because XLA:CPU's
    argmin is a (value, index) pair reduction that it does not vectorize: ~3x slower than
    these two plain reductions (a quantizer's nearest-code search over 1024 codes)."""
    n = x.shape[-1]
    smallest = jnp.min(x, axis=-1, keepdims=True)
    index = jax.lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    return jnp.min(jnp.where((x == smallest) | jnp.isnan(x), index, n), axis=-1)


# ---- LSTM recurrence ----


def lstm_recurrence(x_gates: Array, w_hh: Array, b_hh: Array) -> Array:
    """One LSTM layer over time, the input projection given: `x_gates` `[T, B, 4H]` (x W_ih +
    b_ih for every step), `w_hh` `[H, 4H]`, `b_hh` `[4H]` -> hidden states `[T, B, H]`.

    torch's gate order i, f, g, o; `c' = f c + i g`, `h' = o tanh(c')`, zero initial state.
    """
    if use_custom_kernels():
        return lstm_recurrence_custom(x_gates, w_hh, b_hh)
    return lstm_recurrence_reference(x_gates, w_hh, b_hh)


def _lstm_scan(x_gates: Array, w_hh: Array, b_hh: Array, keep: bool = False):
    """Hidden states `[T, B, H]`; with `keep`, also the cell states `[T, B, H]` and the
    activated gates `[T, B, 4H]` of every step (the backward's residuals)."""

    def step(carry, xg):
        h, c = carry
        gates = xg + (h @ w_hh + b_hh)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c = f * c + i * g
        h = o * jnp.tanh(c)
        return (h, c), ((h, c, jnp.concatenate([i, f, g, o], axis=-1)) if keep else h)

    zeros = jnp.zeros(x_gates.shape[1:-1] + (w_hh.shape[0],), x_gates.dtype)
    return jax.lax.scan(step, (zeros, zeros), x_gates)[1]


def lstm_recurrence_reference(x_gates: Array, w_hh: Array, b_hh: Array) -> Array:
    return _lstm_scan(x_gates, w_hh, b_hh)


@jax.custom_vjp
def lstm_recurrence_custom(x_gates: Array, w_hh: Array, b_hh: Array) -> Array:
    """The same scan forward; the backward scan carries only (dh, dc) and keeps each step's
    gate gradient, and the weight and bias gradients are one matmul and one sum over all
    steps after it, because autodiff of the scan adds an `[H, 4H]` outer product into the
    weight gradient at every step (a full write of the weights per step)."""
    return _lstm_scan(x_gates, w_hh, b_hh)


def _lstm_fwd(x_gates, w_hh, b_hh):
    hs, cs, acts = _lstm_scan(x_gates, w_hh, b_hh, keep=True)
    return hs, (hs, cs, acts, w_hh)


def _lstm_bwd(res, dhs):
    hs, cs, acts, w_hh = res
    # W_hh^T materialised once: a dot against the transposed operand ran ~3x slower per step
    # on XLA:CPU, and the barrier keeps XLA from folding the transpose back into the dot.
    w_t = jax.lax.optimization_barrier(jnp.transpose(w_hh))
    c_prev = jnp.concatenate([jnp.zeros_like(cs[:1]), cs[:-1]])

    def step(carry, inputs):
        dh_next, dc_next = carry
        dh_out, c, c0, a = inputs
        i, f, g, o = jnp.split(a, 4, axis=-1)
        tc = jnp.tanh(c)
        dh = dh_out + dh_next
        dc = dc_next + dh * o * (1.0 - tc * tc)
        da = jnp.concatenate(
            [
                dc * g * i * (1.0 - i),
                dc * c0 * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                dh * tc * o * (1.0 - o),
            ],
            axis=-1,
        )
        return (da @ w_t, dc * f), da

    zeros = jnp.zeros_like(hs[0])
    _, dgates = jax.lax.scan(step, (zeros, zeros), (dhs, cs, c_prev, acts), reverse=True)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]])
    dw = jnp.einsum("tbh,tbg->hg", h_prev, dgates)
    return dgates, dw.astype(w_hh.dtype), jnp.sum(dgates, axis=(0, 1)).astype(w_hh.dtype)


lstm_recurrence_custom.defvjp(_lstm_fwd, _lstm_bwd)
