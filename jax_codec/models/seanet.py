"""SEANet encoder/decoder (EnCodec's architecture): ELU, residual blocks, LSTM bottleneck.

Selected with `model.arch = "seanet"` (see `configs/encodec_24khz.py`); reuses the weight-normed
convolutions of `layers.py`, with EnCodec's reflect padding (`pad_mode="reflect"`):

- encoder: conv(k=7) to `width`; per stride: residual blocks (one per dilation), ELU, conv
  (kernel 2*stride, stride) doubling the channels; a multi-layer LSTM with a skip; ELU,
  conv(k=7) to `latent_dim`.
- decoder: conv(k=7) to `width`; the LSTM; per stride: ELU, transposed conv (kernel
  2*stride) halving the channels, residual blocks; ELU, conv(k=7) to the audio channels; no
  output activation unless `final_activation="tanh"`.
- residual block (Demucs v3 style): ELU, conv(k=3, dilation) to `dim // compress`, ELU,
  conv(k=1) back to `dim`; the skip is the identity (`true_skip`) or a k=1 conv.

All arrays are `[B, T, C]`. The LSTM makes these models offline-only: streaming them chunk by
chunk raises (see `LSTM`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_codec.models.kernels import elu, lstm_recurrence
from jax_codec.models.layers import SCALED_INIT, WNConv1d, WNConvTranspose1d, streaming

Array = jax.Array

LSTM_STREAM = (
    "a model with an LSTM (model.seanet.lstm_layers > 0, EnCodec's SEANet) cannot stream "
    "chunk by chunk in jax_codec; encode and decode it offline with Codec.encode / Codec.decode."
)


class LSTM(nn.Module):
    """Stacked LSTM over time with a skip (EnCodec's `SLSTM`): `[B, T, C] -> [B, T, C]`.

    Same arithmetic and parameters as torch's `nn.LSTM(C, C, num_layers)`: per layer
    `weight_ih_l{k}` `[in, 4C]`, `weight_hh_l{k}` `[C, 4C]` (torch's, transposed), and both
    biases `bias_ih_l{k}`, `bias_hh_l{k}` `[4C]`; gates in torch's order i, f, g, o;
    `c' = f c + i g`, `h' = o tanh(c')`, zero initial state. Computed in float32.
    """

    num_layers: int = 2
    skip: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if streaming(self):
            raise ValueError(LSTM_STREAM)
        hidden = x.shape[-1]
        bound = 1.0 / hidden**0.5
        init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
        x32 = x.astype(jnp.float32)
        y = x32
        for layer in range(self.num_layers):
            w_ih = self.param(f"weight_ih_l{layer}", init, (y.shape[-1], 4 * hidden))
            w_hh = self.param(f"weight_hh_l{layer}", init, (hidden, 4 * hidden))
            b_ih = self.param(f"bias_ih_l{layer}", init, (4 * hidden,))
            b_hh = self.param(f"bias_hh_l{layer}", init, (4 * hidden,))
            # The input half of every gate for all steps at once; the scan adds the recurrent half.
            x_gates = jnp.einsum("btc,cg->tbg", y, w_ih) + b_ih
            hs = lstm_recurrence(x_gates, w_hh, b_hh)
            y = jnp.swapaxes(hs, 0, 1)
        return (y + x32) if self.skip else y


class SEANetResBlock(nn.Module):
    """ELU, conv(k, dilation) to dim // compress, ELU, conv(k=1) to dim; plus the skip."""

    kernel_size: int = 3
    dilation: int = 1
    compress: int = 2
    true_skip: bool = False
    causal: bool = True
    pad_mode: str = "reflect"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        dim = x.shape[-1]
        conv = dict(
            causal=self.causal, pad_mode=self.pad_mode, dtype=self.dtype, kernel_init=SCALED_INIT
        )
        y = WNConv1d(
            dim // self.compress, self.kernel_size, dilation=self.dilation, name="conv0", **conv
        )(elu(x.astype(self.dtype)))
        y = WNConv1d(dim, 1, name="conv1", **conv)(elu(y))
        skip = (
            x.astype(self.dtype) if self.true_skip else WNConv1d(dim, 1, name="shortcut", **conv)(x)
        )
        return skip + y


class SEANetEncoder(nn.Module):
    """`[B, T, 1] -> [B, ceil(T / prod(strides)), latent_dim]` (reflect padding; see module doc)."""

    width: int = 32
    strides: Sequence[int] = (2, 4, 5, 8)
    latent_dim: int = 128
    dilations: Sequence[int] = (1,)
    causal: bool = True
    pad_mode: str = "reflect"
    lstm_layers: int = 2
    compress: int = 2
    true_skip: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        conv = dict(
            causal=self.causal, pad_mode=self.pad_mode, dtype=self.dtype, kernel_init=SCALED_INIT
        )
        x = WNConv1d(self.width, 7, name="conv_in", **conv)(x)
        channels = self.width
        for i, s in enumerate(self.strides):
            for j, d in enumerate(self.dilations):
                x = SEANetResBlock(
                    3,
                    d,
                    self.compress,
                    self.true_skip,
                    self.causal,
                    self.pad_mode,
                    self.dtype,
                    name=f"block{i}_res{j}",
                )(x)
            channels *= 2
            x = WNConv1d(channels, 2 * s, stride=s, name=f"block{i}_down", **conv)(elu(x))
        if self.lstm_layers:
            x = LSTM(self.lstm_layers, name="lstm")(x).astype(self.dtype)
        return WNConv1d(self.latent_dim, 7, name="conv_out", **conv)(elu(x))


class SEANetDecoder(nn.Module):
    """`[B, F, D] -> [B, F * prod(strides), channels]` (see module doc)."""

    width: int = 512
    strides: Sequence[int] = (8, 5, 4, 2)
    channels: int = 1
    dilations: Sequence[int] = (1,)
    causal: bool = True
    pad_mode: str = "reflect"
    lstm_layers: int = 2
    compress: int = 2
    true_skip: bool = False
    transpose_trim: str = "exact"
    transpose_norm: str = "in"
    final_activation: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: Array) -> Array:
        conv = dict(
            causal=self.causal, pad_mode=self.pad_mode, dtype=self.dtype, kernel_init=SCALED_INIT
        )
        x = WNConv1d(self.width, 7, name="conv_in", **conv)(z)
        if self.lstm_layers:
            x = LSTM(self.lstm_layers, name="lstm")(x).astype(self.dtype)
        channels = self.width
        for i, s in enumerate(self.strides):
            channels //= 2
            x = WNConvTranspose1d(
                channels,
                2 * s,
                s,
                causal=self.causal,
                dtype=self.dtype,
                kernel_init=SCALED_INIT,
                trim=self.transpose_trim,
                norm_axis=self.transpose_norm,
                name=f"block{i}_up",
            )(elu(x))
            for j, d in enumerate(self.dilations):
                x = SEANetResBlock(
                    3,
                    d,
                    self.compress,
                    self.true_skip,
                    self.causal,
                    self.pad_mode,
                    self.dtype,
                    name=f"block{i}_res{j}",
                )(x)
        x = WNConv1d(self.channels, 7, name="conv_out", **conv)(elu(x)).astype(jnp.float32)
        if self.final_activation == "tanh":
            return jnp.tanh(x)
        if self.final_activation != "none":
            raise ValueError(f"final_activation={self.final_activation!r}: use 'tanh' or 'none'")
        return x
