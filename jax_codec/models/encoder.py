"""DAC-style convolutional encoder: waveform `[B, T, 1]` -> latents `[B, T // hop, D]`.

`arch="snac"` gives SNAC's variant of it (`configs/snac_*.py`): depthwise k=7 convs in the
residual units (`depthwise`), local windowed attention after the last block (`attn_window`),
and a last conv of kernel 7 (depthwise when `depthwise`) keeping the channels, with no Snake
before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_codec.models.attention import LocalMHA
from jax_codec.models.layers import SCALED_INIT, ResidualUnit, Snake, WNConv1d

Array = jax.Array


def unfold_channels(x: Array, groups: int) -> Array:
    """`[B * G, T, D]` rows (row b * G + g) -> `[B, T, G * D]`, group 0's features first."""
    bg, t, d = x.shape
    return jnp.swapaxes(x.reshape(bg // groups, groups, t, d), 1, 2).reshape(
        bg // groups, t, groups * d
    )


def split_channels(x: Array, groups: int) -> Array:
    """Inverse of `unfold_channels`: `[B, T, G * D]` -> `[B * G, T, D]` (with D = 1, each
    channel of `[B, T, C]` a row of its own)."""
    b, t, gd = x.shape
    return jnp.swapaxes(x.reshape(b, t, groups, gd // groups), 1, 2).reshape(
        b * groups, t, gd // groups
    )


class EncoderBlock(nn.Module):
    """Residual units (dilations 1, 3, 9) then a strided conv (kernel 2*stride) to `features`."""

    features: int
    stride: int
    dilations: Sequence[int] = (1, 3, 9)
    causal: bool = True
    dtype: Any = jnp.float32
    depthwise: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for d in self.dilations:
            x = ResidualUnit(
                d,
                causal=self.causal,
                dtype=self.dtype,
                kernel_init=SCALED_INIT,
                depthwise=self.depthwise,
            )(x)
        x = Snake(self.dtype)(x)
        return WNConv1d(
            self.features,
            2 * self.stride,
            stride=self.stride,
            causal=self.causal,
            dtype=self.dtype,
            kernel_init=SCALED_INIT,
        )(x)


class Encoder(nn.Module):
    """Conv(k=7) to `width`, then one block per stride doubling channels, then conv to `latent_dim`.

    `[B, T, 1] -> [B, T / prod(strides), latent_dim]`; T must be a multiple of prod(strides).
    `remat`: recompute each block's activations in the backward pass instead of keeping them
    (`nn.remat`); less memory, about one more forward pass of compute, same parameters.
    `arch`: "dac" (Snake, conv(k=3) to `latent_dim`) or "snac" (see the module doc; then
    `latent_dim` must equal the last block's channels); `depthwise` and `attn_window` (0: no
    attention) are SNAC's options.
    `split_blocks` (delayed fusion, for a C-channel input): the first conv and the first
    `split_blocks` blocks see one channel at a time (the channels folded into the batch, the
    same weights for each), and their outputs are concatenated on channels (channel 0 first)
    before the next block, which then sees C times the width; 0: every layer sees all channels.
    """

    width: int = 32
    strides: Sequence[int] = (2, 4, 8, 8)
    latent_dim: int = 512
    dilations: Sequence[int] = (1, 3, 9)
    causal: bool = True
    dtype: Any = jnp.float32
    remat: bool = False
    arch: str = "dac"
    depthwise: bool = False
    attn_window: int = 0
    split_blocks: int = 0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if not 0 <= self.split_blocks <= len(self.strides):
            raise ValueError(
                f"split_blocks={self.split_blocks} must be in [0, {len(self.strides)}] (the "
                "encoder's blocks)"
            )
        if self.arch not in ("dac", "snac"):
            raise ValueError(f"Encoder arch={self.arch!r}: use 'dac' or 'snac'")
        if self.arch == "dac" and (self.depthwise or self.attn_window):
            raise ValueError("depthwise convs and attention are options of arch='snac'")
        block = nn.remat(EncoderBlock) if self.remat else EncoderBlock
        groups = x.shape[-1] if self.split_blocks else 1
        if groups > 1:
            x = split_channels(x, groups)
        x = WNConv1d(self.width, 7, causal=self.causal, dtype=self.dtype, kernel_init=SCALED_INIT)(
            x
        )
        channels = self.width
        for i, s in enumerate(self.strides):
            if groups > 1 and i == self.split_blocks:
                x = unfold_channels(x, groups)
            channels *= 2
            # Named as without remat (nn.remat's class is "CheckpointEncoderBlock").
            x = block(
                channels,
                s,
                self.dilations,
                self.causal,
                self.dtype,
                depthwise=self.depthwise,
                name=f"EncoderBlock_{i}",
            )(x)
        if groups > 1 and self.split_blocks == len(self.strides):
            x = unfold_channels(x, groups)
        if self.arch == "snac":
            if self.latent_dim != channels:
                raise ValueError(
                    f"arch='snac': latent_dim={self.latent_dim} must equal the encoder's last "
                    f"width {channels} (encoder_width * 2 ** len(encoder_strides))"
                )
            if self.attn_window:
                x = LocalMHA(self.attn_window, dtype=self.dtype)(x)
            return WNConv1d(
                channels,
                7,
                causal=self.causal,
                groups=channels if self.depthwise else 1,
                dtype=self.dtype,
                kernel_init=SCALED_INIT,
            )(x)
        x = Snake(self.dtype)(x)
        return WNConv1d(
            self.latent_dim, 3, causal=self.causal, dtype=self.dtype, kernel_init=SCALED_INIT
        )(x)
