"""DAC-style convolutional decoder: latents `[B, F, D]` -> waveform `[B, F * hop, 1]`.

SNAC's options (`configs/snac_*.py`): `depthwise` (a depthwise conv(k=7) on the latents, then a
conv(k=1) to `width`, instead of one conv(k=7); depthwise k=7 convs in the residual units),
`attn_window` (local windowed attention after that first conv; 0: none) and `noise` (a
`NoiseBlock` after each transposed conv; see `layers.NoiseBlock` for where noise comes from).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_codec.models.attention import LocalMHA
from jax_codec.models.encoder import split_channels, unfold_channels
from jax_codec.models.layers import (
    SMALL_INIT,
    NoiseBlock,
    ResidualUnit,
    Snake,
    WNConv1d,
    WNConvTranspose1d,
    streaming,
)

Array = jax.Array

# The side gate is sigmoid(SIDE_GATE_SCALE * a + SIDE_GATE_OFFSET). The offset: sigmoid(4) =
# 0.98, so an untrained gate passes the side almost whole. The scale: Adam moves a parameter
# by about the learning rate per step, so without it the gate's logit could move only a few
# units in a run; its conv starts near zero (SIDE_GATE_INIT), so the scale does not make the
# untrained gate random.
SIDE_GATE_OFFSET = 4.0
SIDE_GATE_SCALE = 10.0
SIDE_GATE_INIT = nn.initializers.variance_scaling(1e-4, "fan_in", "truncated_normal")


class DecoderBlock(nn.Module):
    """Snake, transposed conv (kernel 2*stride) up to `features`, residual units (1, 3, 9)."""

    features: int
    stride: int
    dilations: Sequence[int] = (1, 3, 9)
    causal: bool = True
    dtype: Any = jnp.float32
    # The transposed conv's `trim` and weight-norm `norm_axis` (see WNConvTranspose1d).
    transpose_trim: str = "exact"
    transpose_norm: str = "out"
    depthwise: bool = False
    noise: bool = False

    @nn.compact
    def __call__(self, x: Array, noise_key: Array | None = None) -> Array:
        x = Snake(self.dtype)(x)
        x = WNConvTranspose1d(
            self.features,
            2 * self.stride,
            self.stride,
            causal=self.causal,
            dtype=self.dtype,
            trim=self.transpose_trim,
            norm_axis=self.transpose_norm,
        )(x)
        if self.noise:
            x = NoiseBlock(self.dtype)(x, noise_key)
        for d in self.dilations:
            x = ResidualUnit(d, causal=self.causal, dtype=self.dtype, depthwise=self.depthwise)(x)
        return x


class Decoder(nn.Module):
    """Conv(k=7) to `width`, one block per stride halving channels, Snake, conv(k=7) to 1, tanh.

    `[B, F, D] -> [B, F * prod(strides), channels]`. `remat`: as in `Encoder`.
    `transpose_trim="symmetric"` (DAC's odd strides) makes the last samples fall away; they
    are returned as zeros so the output keeps `F * prod(strides)` samples.
    `final_activation`: "tanh" (DAC) or "none".
    `noise_key`: the key of the noise blocks (`noise=True`), None for none (zero noise).
    `split_blocks` (delayed fusion, the encoder's mirror): the last `split_blocks` blocks and the
    last conv decode each output channel apart (the features split into `channels` equal groups,
    channel 0's first, folded into the batch; the same weights for each), so each of those
    blocks sees half its input width per channel; 0: every layer makes all channels.
    """

    width: int = 512
    strides: Sequence[int] = (8, 8, 4, 2)
    channels: int = 1
    dilations: Sequence[int] = (1, 3, 9)
    causal: bool = True
    dtype: Any = jnp.float32
    remat: bool = False
    transpose_trim: str = "exact"
    transpose_norm: str = "out"
    final_activation: str = "tanh"
    depthwise: bool = False
    attn_window: int = 0
    noise: bool = False
    split_blocks: int = 0
    # The fewest channels a block may have (0: none): each block has max(width / 2^(i+1),
    # min_width), so the last, full-rate blocks of a narrow decoder are not narrower than this.
    min_width: int = 0
    # Side from mid (channels=2, mid/side output; 0: off): the side adds
    # sum_k gain_k(t) * (h_k * mid)(t) over `side_bands` learned causal FIR filters h_k of
    # `side_taps` taps run on the decoded mid (its gradient stopped). The gains come from the
    # latent, one per frame and band (a causal conv over the frames), ramped linearly from the
    # previous frame's to this frame's over the frame's samples: a slowly varying gain per
    # band, as parametric stereo sends, so the side's waveform comes from the mid instead of
    # being made on its own (docs/stereo.md).
    side_bands: int = 0
    side_taps: int = 63
    # Side gate (channels=2, mid/side output; False: off): the side output is multiplied by
    # sigmoid(SIDE_GATE_SCALE * a(t) + SIDE_GATE_OFFSET), a(t) one value per frame from a causal
    # conv over the latent, ramped over each frame's samples from the previous frame's. The log
    # of the gain is about linear in a(t) below 0 dB, so a(t) = -1 takes the side 52 dB down:
    # a (near-)mono passage can decode with no audible side, as identical channels do in dual
    # mono.
    side_gate: bool = False

    @nn.compact
    def __call__(self, z: Array, noise_key: Array | None = None) -> Array:
        n_blocks = len(self.strides)
        if not 0 <= self.split_blocks <= n_blocks:
            raise ValueError(
                f"split_blocks={self.split_blocks} must be in [0, {n_blocks}] (the decoder's "
                "blocks)"
            )
        groups = self.channels if self.split_blocks else 1
        if self.final_activation not in ("tanh", "none"):
            raise ValueError(f"final_activation={self.final_activation!r}: use 'tanh' or 'none'")
        block = nn.remat(DecoderBlock) if self.remat else DecoderBlock
        if self.depthwise:
            d = z.shape[-1]
            x = WNConv1d(d, 7, causal=self.causal, groups=d, dtype=self.dtype, name="head_dw")(z)
            x = WNConv1d(self.width, 1, causal=self.causal, dtype=self.dtype)(x)
        else:
            x = WNConv1d(self.width, 7, causal=self.causal, dtype=self.dtype)(z)
        if self.attn_window:
            x = LocalMHA(self.attn_window, dtype=self.dtype)(x)
        for i, s in enumerate(self.strides):
            if groups > 1 and i == n_blocks - self.split_blocks:
                x = split_channels(x, groups)
            features = max(self.width // 2 ** (i + 1), self.min_width)
            # Named as without remat (nn.remat's class is "CheckpointDecoderBlock").
            x = block(
                features,
                s,
                self.dilations,
                self.causal,
                self.dtype,
                transpose_trim=self.transpose_trim,
                transpose_norm=self.transpose_norm,
                depthwise=self.depthwise,
                noise=self.noise,
                name=f"DecoderBlock_{i}",
            )(x, None if noise_key is None else jax.random.fold_in(noise_key, i))
        x = Snake(self.dtype)(x)
        x = WNConv1d(self.channels // groups, 7, causal=self.causal, dtype=self.dtype)(x)
        if groups > 1:
            x = unfold_channels(x, groups)
        x = x.astype(jnp.float32)
        act = jnp.tanh if self.final_activation == "tanh" else (lambda v: v)
        if self.side_gate and (self.channels != 2 or groups > 1 or self.side_bands):
            raise ValueError(
                "side_gate needs a joint mid/side decoder (channels=2, split_blocks=0, "
                "side_bands=0); set side_gate=False"
            )
        if self.side_bands:
            if self.channels != 2 or groups > 1:
                raise ValueError(
                    f"side_bands={self.side_bands} needs a joint mid/side decoder (channels=2, "
                    "split_blocks=0); set side_bands=0"
                )
            mid = act(x[..., :1])
            bank = WNConv1d(
                self.side_bands,
                self.side_taps,
                causal=self.causal,
                use_bias=False,
                dtype=self.dtype,
                kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
                name="side_bank",
            )(jax.lax.stop_gradient(mid))
            gains = self._frame_gains(z)[:, : x.shape[1]]
            side = jnp.sum(bank.astype(jnp.float32) * gains, -1, keepdims=True)
            x = jnp.concatenate([mid, act(x[..., 1:] + side)], axis=-1)
        elif self.side_gate:
            a = self._frame_gains(z, 1, "side_gate", "side_gate_last", SIDE_GATE_INIT)
            gate = jax.nn.sigmoid(SIDE_GATE_SCALE * a[:, : x.shape[1]] + SIDE_GATE_OFFSET)
            x = jnp.concatenate([act(x[..., :1]), act(x[..., 1:]) * gate], axis=-1)
        else:
            x = act(x)
        n = z.shape[1] * math.prod(self.strides)
        if x.shape[1] < n:
            x = jnp.pad(x, ((0, 0), (0, n - x.shape[1]), (0, 0)))
        return x

    def _frame_gains(
        self,
        z: Array,
        n: int | None = None,
        name: str = "side_gains",
        cache: str = "side_gain_last",
        kernel_init: Any = SMALL_INIT,
    ) -> Array:
        """`n` (default `side_bands`) gains per output sample `[B, F * hop, n]` from the latent
        `[B, F, D]`, from the conv `name` (its previous frame's gains in the cache `cache`):
        a causal conv(k=3) over the frames gives one gain per frame and band, and each frame's
        samples ramp linearly from the previous frame's gain (zero before the first frame;
        carried in the cache when streaming) to its own."""
        hop = math.prod(self.strides)
        n = self.side_bands if n is None else n
        conv = WNConv1d(
            n, 3, causal=self.causal, dtype=self.dtype, name=name, kernel_init=kernel_init
        )
        g = conv(z).astype(jnp.float32)
        if streaming(self):
            last = self.variable(
                "cache", cache, jnp.zeros, (g.shape[0], 1, g.shape[-1]), jnp.float32
            )
            prev = jnp.concatenate([last.value, g[:, :-1]], axis=1)
            last.value = g[:, -1:]
        else:
            prev = jnp.pad(g, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        ramp = jnp.arange(1, hop + 1, dtype=jnp.float32) / hop
        ramped = prev[:, :, None] + (g - prev)[:, :, None] * ramp[None, None, :, None]
        return ramped.reshape(g.shape[0], g.shape[1] * hop, g.shape[-1])
