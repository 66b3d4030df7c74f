"""Local windowed self-attention with rotary position embeddings (SNAC's `LocalMHA`).

The time axis is cut into non-overlapping windows of `window` frames, counted from the first
frame; each frame attends to the frames of its own window only, so the receptive field is
bounded and the layer costs O(T * window). Pre-LayerNorm, one bias-free projection to q, k and
v, heads of 64 dims with rotary embeddings of the position *inside the window* (0 .. window-1),
softmax attention, a bias-free output projection, and a residual connection.

Parameters (for `jax_codec.convert`): `norm/{scale, bias}` (torch `norm.{weight, bias}`),
`to_qkv/kernel` `[C, 3C]` and `to_out/kernel` `[C, C]` (torch `Linear.weight` transposed).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_codec.models.layers import streaming

Array = jax.Array

ATTENTION_STREAM = (
    "a model with local attention (model.snac.attn_window > 0, SNAC's) cannot stream chunk by "
    "chunk: an attention window needs all of its frames. Encode and decode it offline."
)


def rotary_frequencies(length: int, head_dim: int) -> Array:
    """`[length, head_dim]` angles `t * 10000^(-2i / head_dim)`, the half repeated twice."""
    inv_freq = 1.0 / (10000 ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = jnp.arange(length, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.concatenate([freqs, freqs], axis=-1)


def _rotate_half(x: Array) -> Array:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x: Array, freqs: Array) -> Array:
    """Rotate `x` `[..., n, d]` by the angles `freqs` `[n, d]` (GPT-NeoX half-split layout)."""
    return x * jnp.cos(freqs) + _rotate_half(x) * jnp.sin(freqs)


class LocalMHA(nn.Module):
    """`[B, T, C] -> [B, T, C]`: `x + attention(LayerNorm(x))` within windows of `window` frames.

    T should be a multiple of `window` (`Codec` pads its input so that it is); a shorter last
    window is padded and its padded frames are masked out, so any length works.
    """

    window: int = 32
    head_dim: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, t, c = x.shape
        if streaming(self):
            raise ValueError(ATTENTION_STREAM)
        if c % self.head_dim:
            raise ValueError(f"LocalMHA: {c} channels are not a multiple of {self.head_dim}")
        heads = c // self.head_dim
        h = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False, name="norm")(x.astype(jnp.float32))
        qkv = nn.Dense(3 * c, use_bias=False, dtype=self.dtype, name="to_qkv")(h)
        n = self.window
        padded = -(-t // n) * n
        if padded != t:
            qkv = jnp.pad(qkv, ((0, 0), (0, padded - t), (0, 0)))
        # [B, T, 3C] -> 3 x [B, windows, n, heads, d]
        q, k, v = (
            part.reshape(b, padded // n, n, heads, self.head_dim)
            for part in jnp.split(qkv, 3, axis=-1)
        )
        freqs = rotary_frequencies(n, self.head_dim)[:, None, :]  # [n, 1, d]: per head alike
        q = apply_rotary(q.astype(jnp.float32), freqs)
        k = apply_rotary(k.astype(jnp.float32), freqs)
        logits = jnp.einsum("bwnhd,bwmhd->bwhnm", q, k) / math.sqrt(self.head_dim)
        if padded != t:
            valid = (jnp.arange(padded) < t).reshape(padded // n, 1, 1, n)
            logits = jnp.where(valid, logits, -jnp.inf)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bwhnm,bwmhd->bwnhd", weights, v.astype(jnp.float32))
        out = out.reshape(b, padded, c)[:, :t].astype(self.dtype)
        out = nn.Dense(c, use_bias=False, dtype=self.dtype, name="to_out")(out)
        return out + x.astype(self.dtype)
