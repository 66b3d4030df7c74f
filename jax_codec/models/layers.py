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

The hand-written fast paths these modules call (weight norm, depthwise conv, transposed conv,
Snake) live in `kernels.py`, each beside its plain-JAX reference.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_codec.models.kernels import (
    depthwise_conv1d,
    snake,
    transposed_conv,
    transposed_conv_io,
    weight_norm,
    weight_norm_reference,
)

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
    "(jax_codec.inference.chunked.chunked_encode / chunked_decode) instead."
)
REFLECT_STREAM = (
    "a model with reflect padding (model.seanet.pad_mode='reflect', EnCodec's SEANet) cannot "
    "stream chunk by chunk: the reflection at the signal's start has no streaming equivalent. "
    "Encode and decode it offline with Codec.encode / Codec.decode."
)


def streaming(module: nn.Module) -> bool:
    """True inside `apply(..., mutable=["cache"])`: convolutions keep state across chunks.

    Convolutions then read their left context from the `cache` collection (the end of the
    previous chunk) instead of zero padding, and transposed convolutions carry their overlap.
    """
    return module.is_mutable_collection("cache") and not module.is_initializing()


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
    # Integer ceil((length - kernel_size + total) / stride): `length` may be a symbolic
    # dimension (export), which floor-divides but does not true-divide.
    windows = -(-(length - kernel_size + total) // stride)
    extra = windows * stride + (kernel_size - total) - length
    if causal:
        return total, extra
    right = total // 2
    return total - right, right + extra


def add_bias(y: Array, bias: Array) -> Array:
    """`y + bias`, added in float32 and rounded once to y's dtype, so that the bias's gradient
    (a sum over every batch row and time step) is summed in float32: summed in bfloat16 it
    stalls (an MRD output bias got half its float32 gradient)."""
    return (y.astype(jnp.float32) + bias.astype(jnp.float32)).astype(y.dtype)


def _kernel(module: nn.Module, v: Array, g: Array) -> Array:
    """The conv kernel g v / |v|, or its precomputed value from the ``folded`` collection."""
    if module.has_variable("folded", "kernel"):
        return module.get_variable("folded", "kernel")
    # Autodiff's weight-norm backward on every backend: with the written-out one
    # (`kernels.weight_norm_custom`) the generator's fwd+bwd measured slower on CPU.
    return weight_norm_reference(v, g)


# The collection that `transposed_conv_paths` traces with: each transposed conv marks itself.
_TRANSPOSED = "transposed_conv"


def fold_weight_norm(params: Any, transposed: Collection[tuple[str, ...]] = ()) -> Any:
    """The ``folded`` collection for `params`: every weight-normed kernel g v / |v|, computed once.

    Inference that applies the same weights many times (streaming: one small step per 20 ms)
    passes ``{"params": params, "folded": fold_weight_norm(params)}``: the layers then use the
    stored kernels, and the weight-norm arithmetic (a full read of every weight per step) drops
    out of the step. The result is the same kernel values, so outputs are identical.

    The modules at the paths in `transposed` (`transposed_conv_paths`: the transposed
    convolutions) get theirs as ``kernel_io`` `[Cin, k, Cout]`, the layout their matmul reads.
    """

    def fold(tree, path):
        out = {}
        for name, sub in tree.items():
            if isinstance(sub, dict) or hasattr(sub, "items"):
                if "weight_v" in sub and "weight_g" in sub:
                    w = weight_norm(sub["weight_v"], sub["weight_g"])
                    if path + (name,) in transposed:
                        out[name] = {"kernel_io": jnp.transpose(w, (1, 0, 2))}
                    else:
                        out[name] = {"kernel": w}
                else:
                    folded = fold(sub, path + (name,))
                    if folded:
                        out[name] = folded
        return out

    return fold(params, ())


def transposed_conv_paths(apply_fn: Any, *args: Any) -> frozenset[tuple[str, ...]]:
    """Paths (module names from the root) of the `WNConvTranspose1d` layers that
    ``apply_fn(*args, mutable=[...])`` (e.g. ``functools.partial(codec.apply,
    method=...)``) runs: traced abstractly (`jax.eval_shape`), nothing computed."""
    collection = jax.eval_shape(
        lambda *a: apply_fn(*a, mutable=[_TRANSPOSED])[1].get(_TRANSPOSED, {}), *args
    )
    return frozenset(
        tuple(k.key for k in path[:-1])
        for path, _ in jax.tree_util.tree_leaves_with_path(collection)
    )


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
            y = add_bias(y, b)
        return y


class WNConvTranspose1d(nn.Module):
    """Weight-normalized transposed 1D convolution, `[B, F, Cin] -> [B, F * stride, features]`.

    Same arithmetic as torch's ConvTranspose1d (the gradient of a strided conv), computed by
    `kernels.transposed_conv` and trimmed as `transpose_trim` says.
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
        if self.is_mutable_collection(_TRANSPOSED) and not self.is_initializing():
            self.put_variable(_TRANSPOSED, "marker", jnp.zeros((), jnp.int8))
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
        if self.has_variable("folded", "kernel_io"):
            w_io = self.get_variable("folded", "kernel_io").astype(self.dtype)
            y = transposed_conv_io(x.astype(self.dtype), w_io, self.stride)
        else:
            w = _kernel(self, v, g).astype(self.dtype)
            y = transposed_conv(x.astype(self.dtype), w, self.stride)
        y = y[:, left : y.shape[1] - right]
        tail = k - self.stride
        if stream and tail:
            # Overlap-add: the last `k - stride` outputs of a chunk are partial sums that the
            # next chunk completes; carried in the cache (zeros before the first chunk).
            n = x.shape[1] * self.stride
            carry = self.variable(
                "cache", "overlap", jnp.zeros, (x.shape[0], tail, self.features), self.dtype
            )
            # A concatenation, not `.at[].add`: LiteRT's runtime rejects the scatter-add.
            y = jnp.concatenate([y[:, :tail] + carry.value, y[:, tail:]], axis=1)
            carry.value = y[:, n:]
            y = y[:, :n]
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,))
            y = add_bias(y, b)
        return y


class Snake(nn.Module):
    """Snake activation x + sin^2(alpha x) / alpha with a learned per-channel alpha (DAC, BigVGAN).

    Periodic inductive bias that suits pitched audio; alpha is `[C]`, initialised to 1.
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        # alpha stays float32: `snake` takes alpha x in float32 (a bfloat16 alpha would shift
        # the phase of sin^2(alpha x) by up to 0.2% of alpha x).
        alpha = self.param("alpha", nn.initializers.ones, (x.shape[-1],))
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
