"""DAC-style convolutional decoder: latents `[B, F, D]` -> waveform `[B, F * hop, 1]`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_codec.models.layers import ResidualUnit, Snake, WNConv1d, WNConvTranspose1d

Array = jax.Array


class DecoderBlock(nn.Module):
    """Snake, transposed conv (kernel 2*stride) up to `features`, residual units (1, 3, 9)."""

    features: int
    stride: int
    dilations: Sequence[int] = (1, 3, 9)
    causal: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = Snake(self.dtype)(x)
        x = WNConvTranspose1d(
            self.features, 2 * self.stride, self.stride, causal=self.causal, dtype=self.dtype
        )(x)
        for d in self.dilations:
            x = ResidualUnit(d, causal=self.causal, dtype=self.dtype)(x)
        return x


class Decoder(nn.Module):
    """Conv(k=7) to `width`, one block per stride halving channels, Snake, conv(k=7) to 1, tanh.

    `[B, F, D] -> [B, F * prod(strides), channels]`.
    """

    width: int = 512
    strides: Sequence[int] = (8, 8, 4, 2)
    channels: int = 1
    dilations: Sequence[int] = (1, 3, 9)
    causal: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: Array) -> Array:
        x = WNConv1d(self.width, 7, causal=self.causal, dtype=self.dtype)(z)
        features = self.width
        for s in self.strides:
            features //= 2
            x = DecoderBlock(features, s, self.dilations, self.causal, self.dtype)(x)
        x = Snake(self.dtype)(x)
        x = WNConv1d(self.channels, 7, causal=self.causal, dtype=self.dtype)(x)
        return jnp.tanh(x.astype(jnp.float32))
