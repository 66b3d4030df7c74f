"""Building blocks: weight-normed 1D convolutions (causal or centred), Snake, residual units.

Shape key used across jax_codec: B batch, T samples, F frames, C channels, K codebooks, D dims.
All arrays are channels-last `[B, T, C]`.

Padding conventions (these define the algorithmic latency, see `Codec.latency_samples`):
- causal conv: all padding on the left, so output `i` sees inputs `<= i * stride + stride - 1`;
- causal transposed conv: the surplus `kernel - stride` outputs are trimmed on the right, so
  output sample `i` sees input frames `<= i // stride`;
- non-causal ("centred") modes split the padding as DAC does, which keeps DAC-compatible shapes.

Streaming: applied with ``mutable=["cache"]``, the causal convolutions keep their left context
(and transposed convolutions their overlap) in the ``cache`` collection, so a signal fed chunk by
chunk gives the same output as the whole signal at once (see `jax_codec.inference.streaming`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any

_DIMS = ("NWC", "WIO", "NWC")

# DAC's init (truncated normal, std 0.02): a near-silent decoder output at step 0.
SMALL_INIT = nn.initializers.truncated_normal(0.02)
# Variance-preserving init for the encoder and the code projections, so encoder outputs start at
# the scale of the (unit-normal) codebooks: with DAC's init they start ~1e5 times smaller, the
# first level's codes swamp the residual and every level collapses to a few codes.
SCALED_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def conv_padding(kernel_size: int, stride: int, dilation: int, causal: bool) -> tuple[int, int]:
    """(left, right) input padding so that a conv maps T samples to T / stride outputs."""
    total = (kernel_size - 1) * dilation + 1 - stride
    if total < 0:
        raise ValueError(
            f"kernel_size={kernel_size} (dilation {dilation}) is smaller than stride={stride}: "
            "inputs would be skipped; use kernel_size >= stride."
        )
    if causal:
        return total, 0
    left = math.ceil(total / 2)
    return left, total - left


def transpose_trim(kernel_size: int, stride: int, causal: bool) -> tuple[int, int]:
    """(left, right) samples to drop from a full transposed conv so it maps F frames to F*stride."""
    total = kernel_size - stride
    if total < 0:
        raise ValueError(f"transposed conv kernel_size={kernel_size} < stride={stride}")
    if causal:
        return 0, total
    left = math.ceil(total / 2)
    return left, total - left


NONCAUSAL_STREAM = (
    "a non-causal (centred) model cannot stream: it looks ahead. Use the chunked offline path "
    "(jax_codec.inference.streaming.chunked_encode / chunked_decode) instead."
)
REFLECT_STREAM = (
    "a model with reflect padding (model.pad_mode='reflect', EnCodec's SEANet) cannot stream "
    "chunk by chunk: the reflection at the signal's start has no streaming equivalent. Encode "
    "and decode it offline with Codec.encode / Codec.decode."
)


def streaming(module: nn.Module) -> bool:
    """True inside `apply(..., mutable=["cache"])`: convolutions keep state across chunks.

    Convolutions then read their left context from the `cache` collection (the end of the
    previous chunk) instead of zero padding, and transposed convolutions carry their overlap.
    """
    return module.is_mutable_collection("cache") and not module.is_initializing()


def _norm_axes(v: Array, g: Array) -> tuple[int, ...]:
    if g.ndim == 1:
        return tuple(range(v.ndim - 1))
    return tuple(i for i in range(v.ndim) if g.shape[i] == 1)


def _weight_norm_parts(v: Array, g: Array) -> tuple[Array, Array]:
    """(|v| per channel with keepdims, g / max(|v|, 1e-12) in that shape)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=_norm_axes(v, g), keepdims=True))
    return norm, jnp.reshape(g, norm.shape) / jnp.maximum(norm, 1e-12)


@jax.custom_vjp
def weight_norm(v: Array, g: Array) -> Array:
    """g v / |v|, the norm taken per channel of the axis that `g` spans.

    `g` `[features]` (the usual case): one norm per output channel (last axis), as torch's
    weight_norm(dim=0) on a Conv1d. `g` with `v`'s rank (e.g. `[1, Cin, 1]`): one norm per
    entry of the axes where g's size is not 1, i.e. over the axes where it is 1; torch's
    weight_norm(dim=0) on a ConvTranspose1d normalises per *input* channel that way.

    The backward is written out (same values as autodiff): one reduction and one elementwise
    pass per kernel. Autodiff's version kept several intermediate per-channel terms, i.e. more
    small kernels per conv, and every kernel costs XLA compile time (the discriminators have
    ~100 weight-normed convs).
    """
    return _weight_norm_autodiff(v, g)


def _weight_norm_autodiff(v: Array, g: Array) -> Array:
    """`weight_norm`'s value, differentiated by autodiff."""
    return v * _weight_norm_parts(v, g)[1]


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


weight_norm.defvjp(_weight_norm_fwd, _weight_norm_bwd)


def pad_reflect(x: Array, left: int, right: int) -> Array:
    """Reflect-pad the time axis of `[B, T, C]` like EnCodec's `pad1d(mode='reflect')`.

    Reflection needs more samples than the pad: a too-short input is first extended with
    zeros on the right (then cut back), exactly as EnCodec does.
    """
    length = x.shape[1]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
    y = jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode="reflect")
    return y[:, : y.shape[1] - extra]


def reflect_conv_padding(
    length: int, kernel_size: int, stride: int, dilation: int, causal: bool
) -> tuple[int, int]:
    """(left, right) padding of EnCodec's `SConv1d`, including its extra right padding.

    The extra right padding (EnCodec's `get_extra_padding_for_conv1d`) makes the last window
    full, so a conv maps `length` inputs to `ceil(length / stride)` outputs; it is zero when
    `length` is a multiple of `stride`.
    """
    total = (kernel_size - 1) * dilation - (stride - 1)
    n_frames = (length - kernel_size + total) / stride + 1
    extra = (math.ceil(n_frames) - 1) * stride + (kernel_size - total) - length
    if causal:
        return total, extra
    right = total // 2
    return total - right, right + extra


def _kernel(module: nn.Module, v: Array, g: Array) -> Array:
    """The conv kernel g v / |v|, or its precomputed value from the ``folded`` collection."""
    if module.has_variable("folded", "kernel"):
        return module.get_variable("folded", "kernel")
    # Autodiff's weight-norm backward here: with the written-out one (`weight_norm`, which
    # the discriminators use), the DAC-44k generator's fwd+bwd measured ~12% slower.
    return _weight_norm_autodiff(v, g)


def fold_weight_norm(params: Any) -> Any:
    """The ``folded`` collection for `params`: every weight-normed kernel g v / |v|, computed once.

    Inference that applies the same weights many times (streaming: one small step per 20 ms)
    passes ``{"params": params, "folded": fold_weight_norm(params)}``: the layers then use the
    stored kernels, and the weight-norm arithmetic (a full read of every weight per step) drops
    out of the step. The result is the same kernel values, so outputs are identical.
    """

    def fold(tree):
        out = {}
        for name, sub in tree.items():
            if isinstance(sub, dict) or hasattr(sub, "items"):
                if "weight_v" in sub and "weight_g" in sub:
                    out[name] = {"kernel": weight_norm(sub["weight_v"], sub["weight_g"])}
                else:
                    folded = fold(sub)
                    if folded:
                        out[name] = folded
        return out

    return fold(params)


class WNConv1d(nn.Module):
    """Weight-normalized 1D convolution, `[B, T, Cin] -> [B, T // stride, features]`.

    Parameters `weight_v` `[kernel, Cin, features]`, `weight_g` `[features]` (w = g v / |v|),
    and `bias`. We keep v and g explicitly (rather than flax's `nn.WeightNorm`) because the
    PyTorch checkpoints we import store exactly these two tensors.
    """

    features: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    causal: bool = True
    use_bias: bool = True
    groups: int = 1
    dtype: Dtype = jnp.float32
    kernel_init: Any = SMALL_INIT
    # "zeros", or "reflect": EnCodec's SConv1d padding (reflected samples, plus its extra
    # right padding so that any length maps to ceil(length / stride) outputs; offline only).
    pad_mode: str = "zeros"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cin = x.shape[-1]
        if self.pad_mode not in ("zeros", "reflect"):
            raise ValueError(f"pad_mode={self.pad_mode!r}: use 'zeros' or 'reflect'")
        if cin % self.groups:
            raise ValueError(f"input channels {cin} not divisible by groups={self.groups}")
        v = self.param(
            "weight_v",
            self.kernel_init,
            (self.kernel_size, cin // self.groups, self.features),
        )
        g = self.param("weight_g", lambda _, v_: jnp.sqrt(jnp.sum(v_**2, axis=(0, 1))), v)
        w = _kernel(self, v, g)
        pad = conv_padding(self.kernel_size, self.stride, self.dilation, self.causal)
        if self.pad_mode == "reflect":
            if streaming(self):
                raise ValueError(REFLECT_STREAM)
            pad = reflect_conv_padding(
                x.shape[1], self.kernel_size, self.stride, self.dilation, self.causal
            )
            x = pad_reflect(x, *pad)
            pad = (0, 0)
        if streaming(self):
            # The left padding becomes the last `pad[0]` inputs of the previous chunk (zeros
            # before the first), so chunk after chunk equals one causal conv over the whole.
            if not self.causal:
                raise ValueError(NONCAUSAL_STREAM)
            if pad[0]:
                cache = self.variable(
                    "cache", "inputs", jnp.zeros, (x.shape[0], pad[0], cin), self.dtype
                )
                x = jnp.concatenate([cache.value, x.astype(self.dtype)], axis=1)
                cache.value = x[:, x.shape[1] - pad[0] :]
            pad = (0, 0)
        if self.groups == cin == self.features and self.stride == 1 and self.groups > 1:
            y = depthwise_conv1d(x.astype(self.dtype), w.astype(self.dtype), self.dilation, pad)
        else:
            y = jax.lax.conv_general_dilated(
                x.astype(self.dtype),
                w.astype(self.dtype),
                window_strides=(self.stride,),
                padding=(pad,),
                rhs_dilation=(self.dilation,),
                dimension_numbers=_DIMS,
                feature_group_count=self.groups,
            )
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,))
            y = y + b.astype(self.dtype)
        return y


def depthwise_conv1d(x: Array, w: Array, dilation: int, pad: tuple[int, int]) -> Array:
    """Depthwise (groups = channels) stride-1 conv: `[B, T, C]`, `w` `[k, 1, C]` ->
    `[B, T + pad[0] + pad[1] - (k - 1) dilation, C]`; `y[t] = sum_i xp[t + i dilation] w[i]`.

    The same numbers as `conv_general_dilated(..., feature_group_count=C)`, computed as k
    shifted multiply-adds in one fused loop: XLA's CPU grouped convolution is 10-60x slower
    forward (SNAC's k=7 residual units; see benchmarks/README.md). Autodiff of the shifted
    sums would reduce over time once per tap badly, so the backward pass is written out:
    the input gradient is the same shifted sum with the taps reversed, the kernel gradient
    one reduction per tap.
    """
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

    # d w[i] = sum_{b,t} xp[b, t + i d] g[b, t], one tap per scan step. As k unrolled
    # reductions, XLA:CPU scheduled them so that the SNAC-32k fwd+bwd held 12.6 GiB of
    # temporaries (7.4 GiB as a scan) and ran 30% slower (benchmarks/README.md).
    def tap(carry, i):
        xi = jax.lax.dynamic_slice_in_dim(xp, i * dilation, n, axis=1)
        return carry, jnp.sum((xi * g).astype(jnp.float32), axis=(0, 1))

    _, gw = jax.lax.scan(tap, None, jnp.arange(k))
    return gx.astype(x.dtype), gw[:, None, :].astype(w.dtype)


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def grouped_conv1d(x: Array, w: Array, stride: int, pad: tuple[int, int], groups: int) -> Array:
    """Grouped 1D conv, `[B, T, Cin]`, `w` `[k, Cin / groups, Cout]` -> `[B, T', Cout]`: XLA's
    `feature_group_count` convolution, with its weight gradient computed as a batched matmul.

    XLA's CPU backend computes the weight gradient of a convolution with many groups up to
    ~25x slower than the same contraction over input patches (MelGAN's MSD, 4 channels per
    group: 5.6 s vs 0.2 s for one layer; see benchmarks/README.md). The forward and the input
    gradient stay XLA's (they are fast).
    """
    return _grouped(x, w, stride, tuple(pad), groups)


def _xla_grouped(x: Array, w: Array, stride: int, pad: tuple[int, int], groups: int) -> Array:
    return jax.lax.conv_general_dilated(
        x, w, (stride,), (pad,), dimension_numbers=_DIMS, feature_group_count=groups
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _grouped(x, w, stride, pad, groups):
    return _xla_grouped(x, w, stride, pad, groups)


def _grouped_fwd(x, w, stride, pad, groups):
    return _xla_grouped(x, w, stride, pad, groups), (x, w)


def _grouped_bwd(stride, pad, groups, res, g):
    x, w = res
    _, x_vjp = jax.vjp(lambda x_: _xla_grouped(x_, w, stride, pad, groups), x)
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


def transposed_conv(x: Array, w: Array, stride: int) -> Array:
    """Full transposed convolution: `out[t * stride + j] += x[t] @ w[j]`, `[B, F, Cin]` with
    `w` `[k, Cin, Cout]` -> `[B, (F - 1) * stride + k, Cout]` (torch's ConvTranspose1d, no
    padding).

    Computed as one matmul `[B F, Cin] x [Cin, n stride Cout]` (the kernel zero-padded to
    `n = ceil(k / stride)` blocks of `stride` taps) and an overlap-add of the `n` blocks shifted by
    one frame each, rather than a convolution over the input dilated by `stride`: no multiplies
    by the inserted zeros, and the gradients are matmuls too. On XLA:CPU this made the DAC-44k
    decoder's backward pass ~25x faster (benchmarks/README.md).
    """
    k, cin, cout = w.shape
    b, f, _ = x.shape
    n = -(-k // stride)
    wm = jnp.pad(w, ((0, n * stride - k), (0, 0), (0, 0)))
    wm = wm.transpose(1, 0, 2).reshape(cin, n * stride * cout)
    p = jnp.dot(x, wm).reshape(b, f, n, stride * cout)
    y = sum(jnp.pad(p[:, :, i], ((0, 0), (i, n - 1 - i), (0, 0))) for i in range(n))
    return y.reshape(b, (f + n - 1) * stride, cout)[:, : (f - 1) * stride + k]


class WNConvTranspose1d(nn.Module):
    """Weight-normalized transposed 1D convolution, `[B, F, Cin] -> [B, F * stride, features]`.

    Same arithmetic as torch's ConvTranspose1d (the gradient of a strided conv), computed by
    `transposed_conv` (one matmul and an overlap-add) and trimmed as `transpose_trim` says.
    Kernel `weight_v` is `[kernel, Cin, features]`.
    """

    features: int
    kernel_size: int
    stride: int
    causal: bool = True
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Any = SMALL_INIT
    # "exact": F frames -> F * stride outputs (`transpose_trim`). "symmetric" (non-causal):
    # drop ceil((kernel - stride) / 2) outputs on both sides, as DAC's
    # ConvTranspose1d(padding=ceil(stride / 2)) does; an odd stride then gives F * stride - 1.
    trim: str = "exact"
    # Weight-norm axis: "out" (`weight_g` `[features]`, one norm per output channel) or "in"
    # (`weight_g` `[1, Cin, 1]`, one norm per input channel: torch's weight_norm(dim=0) on a
    # ConvTranspose1d, whose weight is `[Cin, features, kernel]`; DAC and EnCodec use it).
    norm_axis: str = "out"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cin = x.shape[-1]
        if self.norm_axis not in ("out", "in"):
            raise ValueError(f"norm_axis={self.norm_axis!r}: use 'out' or 'in'")
        if self.trim not in ("exact", "symmetric"):
            raise ValueError(f"trim={self.trim!r}: use 'exact' or 'symmetric'")
        v = self.param(
            "weight_v",
            self.kernel_init,
            (self.kernel_size, cin, self.features),
        )
        if self.norm_axis == "out":
            g = self.param("weight_g", lambda _, v_: jnp.sqrt(jnp.sum(v_**2, axis=(0, 1))), v)
        else:
            g = self.param(
                "weight_g",
                lambda _, v_: jnp.sqrt(jnp.sum(v_**2, axis=(0, 2), keepdims=True)),
                v,
            )
        w = _kernel(self, v, g)
        k = self.kernel_size
        left, right = transpose_trim(k, self.stride, self.causal)
        if self.trim == "symmetric":
            if self.causal:
                raise ValueError("trim='symmetric' is a non-causal (centred) mode")
            left = right = math.ceil((k - self.stride) / 2)
        stream = streaming(self)
        if stream:
            if not self.causal:
                raise ValueError(NONCAUSAL_STREAM)
            left = right = 0  # full output: the tail overlaps the next chunk's head
        y = transposed_conv(x.astype(self.dtype), w.astype(self.dtype), self.stride)
        y = y[:, left : y.shape[1] - right]
        tail = k - self.stride
        if stream and tail:
            # Overlap-add: the last `k - stride` outputs of a chunk are partial sums that the
            # next chunk completes; carried in the cache (zeros before the first chunk).
            n = x.shape[1] * self.stride
            carry = self.variable(
                "cache", "overlap", jnp.zeros, (x.shape[0], tail, self.features), self.dtype
            )
            y = y.at[:, :tail].add(carry.value)
            carry.value = y[:, n:]
            y = y[:, :n]
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,))
            y = y + b.astype(self.dtype)
        return y


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
    """sin(u)^2 in float32, about 3x faster than `jnp.square(jnp.sin(u))` on CPU.

    sin^2 has period pi, so one reduction to r in [-pi/2, pi/2] and an odd degree-11 Taylor
    polynomial (error < 6e-8 on that interval) suffice; there is no quadrant bookkeeping. Max
    abs error against float64 is 4e-7 (jnp.sin: 1e-7). The Snake activations are a third of a
    streaming step's time with `jnp.sin`, which XLA's CPU backend does not vectorize as well.
    Computed in float32 whatever the input dtype (a bfloat16 reduction would lose the phase).
    """
    dtype = u.dtype
    s = _sin_poly(_reduce_mod_pi(u.astype(jnp.float32)))
    return (s * s).astype(dtype)


def snake(x: Array, alpha: Array) -> Array:
    """Snake `x + sin^2(alpha x) / alpha` (DAC's `x + (alpha + 1e-9)^-1 sin^2(alpha x)`), alpha `[C]`.

    The backward pass is written out: from the saved `x` and alpha it recomputes
    `sin(2 alpha x) = 2 sin cos` with one shared range reduction, and sums alpha's gradient over
    batch and time as a matmul with a ones vector. Autodiff of the forward polynomial kept
    several full-size intermediates alive for the backward pass, and XLA:CPU reduced alpha's
    gradient in a slow column reduction. DAC-44k generator fwd+bwd (4 x 1 s): 24.9 -> 21.2 s
    back to back, peak RSS 12.8 -> 7.8 GiB (benchmarks/README.md).
    """
    return _snake(x, alpha)


def _snake_fwd_value(x: Array, alpha: Array) -> Array:
    # alpha x in float32 whatever the compute dtype: in bfloat16 its phase error at |alpha x| ~ 10
    # would be ~0.05 rad.
    u = alpha.astype(jnp.float32) * x.astype(jnp.float32)
    return x + (sin_squared(u) * (1.0 / (alpha.astype(jnp.float32) + 1e-9))).astype(x.dtype)


@jax.custom_vjp
def _snake(x: Array, alpha: Array) -> Array:
    return _snake_fwd_value(x, alpha)


def _snake_fwd(x, alpha):
    return _snake_fwd_value(x, alpha), (x, alpha)


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
    # A matmul with ones, not jnp.sum: with jnp.sum this backward was no faster than autodiff's
    # (Snake vjp at [4, 44100, 96]: 108-131 ms, autodiff 102-142 ms, this 84-89 ms).
    # The barrier hides the constant ones, so that XLA cannot fold the dot back into a reduction.
    ones = jax.lax.optimization_barrier(jnp.ones((h.shape[0],), jnp.float32))
    ga = jnp.matmul(ones, h, precision=jax.lax.Precision.HIGHEST)  # f32 on TPU/GPU too
    return gx.astype(x.dtype), ga.astype(alpha.dtype)


_snake.defvjp(_snake_fwd, _snake_bwd)


class Snake(nn.Module):
    """Snake activation x + sin^2(alpha x) / alpha with a learned per-channel alpha (DAC, BigVGAN).

    Periodic inductive bias that suits pitched audio; alpha is `[C]`, initialised to 1.
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        alpha = self.param("alpha", nn.initializers.ones, (x.shape[-1],)).astype(self.dtype)
        return snake(x.astype(self.dtype), alpha)


class ResidualUnit(nn.Module):
    """Snake -> dilated conv(k=7) -> Snake -> conv(k=1), plus skip. `[B, T, C] -> [B, T, C]`.

    `depthwise`: the k=7 conv is depthwise (groups = C, SNAC's), `weight_v` `[7, 1, C]`.
    """

    dilation: int
    kernel_size: int = 7
    causal: bool = True
    dtype: Dtype = jnp.float32
    kernel_init: Any = SMALL_INIT
    depthwise: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        y = Snake(self.dtype)(x)
        y = WNConv1d(
            c,
            self.kernel_size,
            dilation=self.dilation,
            causal=self.causal,
            groups=c if self.depthwise else 1,
            dtype=self.dtype,
            kernel_init=self.kernel_init,
        )(y)
        y = Snake(self.dtype)(y)
        y = WNConv1d(c, 1, causal=self.causal, dtype=self.dtype, kernel_init=self.kernel_init)(y)
        return x.astype(self.dtype) + y


class NoiseBlock(nn.Module):
    """SNAC's noise injection: `x + n * conv1x1(x)`, `n` `[B, T, 1]` standard normal noise.

    `noise_key` None (the default everywhere in inference) means n = 0: the block is the
    identity, so decoding is deterministic and a signal decoded window by window equals the
    whole-signal decoding. With a key, n is drawn from it (one value per sample, shared by all
    channels, as SNAC's `torch.randn(B, 1, T)`) and recorded with `sow("intermediates",
    "noise")`, so a caller can read back exactly the noise that was used (the equivalence
    tests feed it to PyTorch SNAC). `Codec` decides where keys come from (see `Codec.noise`).
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, noise_key: Array | None = None) -> Array:
        conv = WNConv1d(x.shape[-1], 1, use_bias=False, dtype=self.dtype, name="linear")
        if noise_key is None:
            if self.is_initializing():
                conv(x)  # create the parameters
            return x.astype(self.dtype)
        noise = jax.random.normal(noise_key, (x.shape[0], x.shape[1], 1), jnp.float32)
        self.sow("intermediates", "noise", noise)
        return x.astype(self.dtype) + noise.astype(self.dtype) * conv(x)
