"""SpectroStream's encoder and decoder (Google, 2025; `configs/spectrostream_48khz.py`).

A 48 kHz stereo codec on the STFT: the encoder takes each channel's STFT (Hann window 960,
hop 480, FFT 960; the Nyquist bin dropped: 480 bins, real and imaginary parts as two conv
channels), runs 2-D convolutions over (time, frequency) with ELU pre-activation residual blocks
that stride time by (1, 1, 1, 1, 1, 2, 2) and frequency by (2, 2, 3, 2, 2, 2, 1), flattens the
last 5 bins x 256 channels and projects them to 256 latent dims per 40 ms frame. The decoder
mirrors it with transposed convolutions and an inverse STFT (overlap-add).

Delayed stereo fusion (`channel_splits`, `channel_recombo_block`): the first blocks see one
channel at a time (left and right folded into the batch, the same weights for both), and their
outputs are concatenated on channels from block `channel_recombo_block` on; the decoder splits
them again the same number of blocks before its end.

Arithmetic follows the reference (`magenta_rt/jax/spectrostream.py`, built on `sequence-layers`)
call for call, so imported weights give its codes and audio: convolutions are
`lax.conv_general_dilated` with the reference's paddings (time: "semicausal", output `i` of a
stride-`s` conv sees inputs `<= i * s + s - 1`; transposed convs: input dilation, causal),
the STFT is `jnp.fft.rfft` of reverse-causal frames (frame `i` covers samples
`[480 i, 480 i + 960)`), the inverse STFT overlap-adds with the Griffin-Lim window.

Latency (see `Codec.encoder_lookahead_frames` / `decoder_lookahead_frames`): a latent frame's
last STFT frame reaches 480 samples into the next frame's audio, so a stream encodes frame `j`
once frame `j + 1` has arrived; the decoder's last block looks one latent frame ahead
(`decoder_lookahead`: the reference drops its first 4 STFT frames), so offline decoding of F
frames yields `(F - 1) * hop` samples (zero-padded to `F * hop` here) and a stream emits them one
frame late. The streaming path (``mutable=["cache"]``) keeps each convolution's left context,
the encoder's last hop of audio and the inverse STFT's overlap, and zeroes the frames before the
stream's start exactly where the offline path zero-pads (the reference's masks).

Shapes: B batch, T samples, F STFT frames (or latent frames), H frequency bins, C channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.models.layers import streaming

Array = jax.Array

_DIMS = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------- STFT pieces


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (tf.signal's, as the reference computes it in float32)."""
    n = np.asarray(length, np.float32)
    count = np.arange(length, dtype=np.float32)
    return (np.float32(0.5) - np.float32(0.5) * np.cos(2 * np.pi * count / n)).astype(np.float32)


def inverse_window(frame_length: int, frame_step: int) -> Array:
    """The inverse STFT's window: Hann over the overlap-added squared Hann (Griffin-Lim eq. 7)."""
    w = jnp.asarray(hann_window(frame_length))
    overlaps = -(-frame_length // frame_step)
    denom = jnp.pad(jnp.square(w), [(0, overlaps * frame_step - frame_length)])
    denom = jnp.sum(denom.reshape(overlaps, frame_step), 0, keepdims=True)
    denom = jnp.tile(denom, [overlaps, 1]).reshape(overlaps * frame_step)[:frame_length]
    return jnp.where(denom == 0.0, 0, w / denom)


def frames(x: Array, frame_length: int, frame_step: int, count: int) -> Array:
    """`count` frames `[B, count, frame_length, C]` of `x [B, T, C]`, frame i at `i * step`
    (`x` long enough; frame_length a multiple of frame_step)."""
    b, _, c = x.shape
    k = frame_length // frame_step
    need = (count + k - 1) * frame_step
    blocks = x[:, :need].reshape(b, count + k - 1, frame_step, c)
    return jnp.concatenate([blocks[:, j : j + count] for j in range(k)], axis=2)


def stft(x: Array, frame_length: int, frame_step: int, fft_length: int, count: int) -> Array:
    """`x [B, T, C]` -> `[B, count, fft_length // 2, 2 C]`: per channel the real and imaginary
    parts (channel order re0, im0, re1, im1, ...), DC kept, Nyquist dropped."""
    f = frames(x, frame_length, frame_step, count) * hann_window(frame_length)[:, None]
    spec = jnp.fft.rfft(f, n=fft_length, axis=2)[:, :, : fft_length // 2]  # [B, F, H, C]
    return jnp.stack([spec.real, spec.imag], axis=-1).reshape(spec.shape[:3] + (-1,))


def inverse_stft_frames(spec: Array, frame_length: int, frame_step: int, fft_length: int) -> Array:
    """`[B, F, fft_length // 2, 2 C]` -> windowed time frames `[B, F, frame_length, C]`."""
    re, im = spec[..., 0::2], spec[..., 1::2]
    z = jnp.pad(jax.lax.complex(re, im), [(0, 0), (0, 0), (0, 1), (0, 0)])  # Nyquist bin 0
    y = jnp.fft.irfft(z, n=fft_length, axis=2)[:, :, :frame_length]
    return y * inverse_window(frame_length, frame_step)[:, None]


def overlap_add(y: Array, frame_step: int) -> Array:
    """`[B, F, L, C]` frames -> `[B, (F - 1) * step + L, C]` (L a multiple of step)."""
    b, f, length, c = y.shape
    k = length // frame_step
    parts = y.reshape(b, f, k, frame_step, c)
    out = jnp.zeros((b, f + k - 1, frame_step, c), y.dtype)
    for j in range(k):
        out = out.at[:, j : j + f].add(parts[:, :, j])
    return out.reshape(b, (f + k - 1) * frame_step, c)


# --------------------------------------------------------------------------- layers


def _freq_padding(kernel: int, stride: int, transpose: bool) -> tuple[int, int]:
    """The reference's frequency padding: centred for convs, "same" for transposed convs."""
    if transpose:
        total = kernel + stride - 2
        left = kernel - 1 if stride > kernel - 1 else math.ceil(total / 2)
        return left, total - left
    total = max(kernel - stride, 0)
    return total // 2, total - total // 2


def _stream_mask(x: Array, valid: Array | None) -> Array:
    """Zero the frames before the stream's start (`valid [F]` False), as offline padding is."""
    return x if valid is None else jnp.where(valid[None, :, None, None], x, 0)


class Conv2d(nn.Module):
    """2-D conv over `[B, F, H, C]`, causal in time: `[B, F / st, H', features]`.

    Parameters `kernel [kt, kf, Cin, features]` and `bias`, as the reference's `Conv2D`.
    Time padding: `kt - st` frames on the left (and `st - 1` on the right offline, which a
    length divisible by `st` never reads); streaming keeps those `kt - st` frames in the cache.
    `transpose`: the reference's `Conv2DTranspose` (input dilated by the strides, causal in time:
    `[B, F * st, H * sf, features]`).
    """

    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    transpose: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, group: int = 0) -> Array:
        """`valid [F]`: the stream mask; `group`: which channel group's stream cache (the
        groups share the weights, each has its own left context)."""
        kt, kf = self.kernel
        st, sf = self.strides
        w = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (kt, kf, x.shape[-1], self.features),
        )
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        x = x.astype(self.dtype)
        ekt = (kt - 1) * self.dilation[0] + 1
        freq = _freq_padding((kf - 1) * self.dilation[1] + 1, sf, self.transpose)
        if self.transpose:
            time = (ekt - 1, st - 1)
        else:
            left = max(ekt - st, 0)
            time = (left, ekt - 1 - left)
        if streaming(self) and ekt > 1:
            x = _stream_mask(x, valid)
            # The input's left context (the dilated input's, for a transposed conv) is the end
            # of the previous chunk: whole input frames, zeros before the first chunk.
            keep = -(-(ekt - 1) // st) if self.transpose else time[0]
            name = f"inputs{group}" if group else "inputs"
            cache = self.variable(
                "cache", name, jnp.zeros, (x.shape[0], keep) + x.shape[2:], self.dtype
            )
            x = jnp.concatenate([cache.value, x], axis=1)
            cache.value = x[:, x.shape[1] - keep :]
            # A conv now reads only real inputs; a transposed conv keeps its causal padding and
            # drops the outputs of the cached frames.
            drop = keep * st if self.transpose else 0
            time = time if self.transpose else (0, 0)
        else:
            drop = 0
        y = jax.lax.conv_general_dilated(
            x,
            w.astype(self.dtype),
            window_strides=(1, 1) if self.transpose else self.strides,
            padding=(time, freq),
            lhs_dilation=self.strides if self.transpose else (1, 1),
            rhs_dilation=self.dilation,
            dimension_numbers=_DIMS,
        )
        return y[:, drop:] + b.astype(self.dtype)


def avg_pool(x: Array, strides: tuple[int, int]) -> Array:
    """Mean over non-overlapping `strides` windows of `[B, F, H, C]` (the reference's
    shortcut pooling: the same `reduce_window` sum, its "semicausal" time padding of
    `stride - 1` frames on the right, never read when F is a multiple of the stride)."""
    if strides == (1, 1):
        return x
    window = (1, *strides, 1)
    pad = ((0, 0), (0, strides[0] - 1), (0, 0), (0, 0))
    total = jax.lax.reduce_window(x, np.asarray(0, x.dtype), jax.lax.add, window, window, pad)
    return total / np.prod(strides)


def upsample(x: Array, strides: tuple[int, int]) -> Array:
    if strides == (1, 1):
        return x
    return jnp.repeat(jnp.repeat(x, strides[0], axis=1), strides[1], axis=2)


class ResBlock(nn.Module):
    """The reference's `conv2d_residual_unit`: ELU pre-activated convs plus a shortcut.

    Down (`transposed=False`): conv 3x3 (`conv2d_3x3`), then the resampling conv
    (`conv2d_{kt}x{kf}_a`, kernel max(3, 2 s)); shortcut: average pooling, then a 1x1 conv
    when the channels change. Up: the transposed resampling conv (`conv2dtranspose_{kt}x{kf}`),
    or a 3x3 conv (`conv2d_3x3_a`) at stride 1, then `conv2d_3x3`; shortcut: a 1x1 conv,
    then repetition. `valid`: the stream mask at the input's rate (down blocks only);
    `group`: the channel group (`Conv2d`).
    """

    features: int
    strides: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    transposed: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, group: int = 0) -> Array:
        s = tuple(self.strides)
        k = (max(3, 2 * s[0]), max(3, 2 * s[1]))
        cin, d = x.shape[-1], self.dtype
        if cin != self.features:
            shortcut = ShortcutConv(self.features, d, name="shortcut_layer")
        else:
            shortcut = lambda v: v  # noqa: E731
        if self.transposed:
            if s == (1, 1):
                first = Conv2d(self.features, (3, 3), name="conv2d_3x3_a", dtype=d)
            else:
                name = f"conv2dtranspose_{k[0]}x{k[1]}"
                first = Conv2d(self.features, k, s, transpose=True, name=name, dtype=d)
            second = Conv2d(
                self.features, (3, 3), dilation=self.dilation, name="conv2d_3x3", dtype=d
            )
            h = second(nn.elu(first(nn.elu(x), group=group)), group=group)
            return h + upsample(shortcut(x), s)
        first = Conv2d(cin, (3, 3), dilation=self.dilation, name="conv2d_3x3", dtype=d)
        second = Conv2d(self.features, k, s, name=f"conv2d_{k[0]}x{k[1]}_a", dtype=d)
        h = second(nn.elu(first(nn.elu(x), valid, group)), valid, group)
        return h + shortcut(avg_pool(x, s))


class ShortcutConv(nn.Module):
    """`shortcut_layer/conv1x1`: the 1x1 conv of a residual block's shortcut."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return Conv2d(self.features, (1, 1), name="conv1x1", dtype=self.dtype)(x)


class PointwiseResidual(nn.Module):
    """Two 1x1 paths added, at one frequency position: `main(x) + b2(act(b1(pre(x))))`.

    Encoder `output_convs` (pre = ELU): conv1x1_last + ELU, conv1x1_b1, ELU, conv1x1_b2.
    Decoder `input_layer` (pre = identity): conv1x1_first + conv1x1_b1, ELU, conv1x1_b2.
    """

    features: int
    hidden: int
    main: str
    pre_activation: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = Conv2d(self.features, (1, 1), name=self.main, dtype=self.dtype)(x)
        two = _TwoConvs(
            self.features, self.hidden, self.pre_activation, self.dtype, name="shortcut_layer"
        )
        return y + two(x)


class _TwoConvs(nn.Module):
    features: int
    hidden: int
    pre_activation: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        h = nn.elu(x) if self.pre_activation else x
        h = Conv2d(self.hidden, (1, 1), name="conv1x1_b1", dtype=self.dtype)(h)
        return Conv2d(self.features, (1, 1), name="conv1x1_b2", dtype=self.dtype)(nn.elu(h))


# --------------------------------------------------------------------------- receptive fields


def encoder_context(ratios, base_conv_size: int, frame_length: int, frame_step: int) -> int:
    """Input samples a latent frame depends on, minus one: the convs' left reach (each conv
    `kt - st` input frames, at its rate), the frame's hop, the STFT's reach into the next
    frame (`ratios`: per block (time, frequency) strides)."""
    frames, rate = base_conv_size - 1, 1
    for st, _ in ratios:
        frames += (2 + max(3, 2 * st) - st) * rate  # conv 3x3, then the resampling conv
        rate *= st
    frames += 4 * rate  # the bottleneck's two 3x3 convs
    return frames * frame_step + rate * frame_step + frame_length - frame_step - 1


def decoder_context(ratios, base_conv_size: int, lookahead: int) -> int:
    """Latent frames an output frame's audio depends on, both sides together (an upper
    bound): each conv's and transposed conv's left reach at its rate, the output conv, the
    overlap-add's previous frame, and `lookahead` frames ahead."""
    per_latent = math.prod(r[0] for r in ratios)
    reach, rate = 4 * per_latent, per_latent  # in STFT frames; input unit: two 3x3 convs
    for st, _ in ratios[::-1]:
        kt = max(3, 2 * st)
        reach += -(-(kt - 1) // st) * rate  # the transposed conv (a 3x3 conv when st == 1)
        rate //= st
        reach += 2 * rate  # its 3x3 conv
    reach += base_conv_size  # the output conv, the overlap-add's previous frame
    return -(-reach // per_latent) + lookahead


# --------------------------------------------------------------------------- encoder, decoder


class _Geometry(nn.Module):
    """The fields encoder and decoder share (the preset's `model.spectrostream`)."""

    frame_length: int = 960
    frame_step: int = 480
    fft_length: int = 960
    # Per block (time stride, frequency stride), encoder order; the decoder runs them reversed.
    ratios: Sequence[tuple[int, int]] = ((1, 2), (1, 2), (1, 3), (1, 2), (1, 2), (2, 2), (2, 1))
    # Per block, the channel multiplier (encoder order).
    mults: Sequence[float] = (2, 1, 2, 1, 1, 2, 1)
    base_depth: int = 32
    base_conv_size: int = 7
    # Channel groups (L, R) coded apart, with shared weights, by the first blocks.
    channel_splits: int = 2
    # The encoder block where the channel groups are concatenated (negative: from the end).
    channel_recombo_block: int = -2
    latent_dim: int = 256
    audio_channels: int = 2
    dtype: Any = jnp.float32

    @property
    def time_stride(self) -> int:
        return math.prod(r[0] for r in self.ratios)

    @property
    def hop_length(self) -> int:
        return self.frame_step * self.time_stride

    @property
    def num_bins(self) -> int:
        return self.fft_length // 2

    def recombo(self) -> int:
        n = len(self.ratios) + 1
        if not -n <= self.channel_recombo_block < n:
            raise ValueError(
                f"channel_recombo_block={self.channel_recombo_block} is out of range for "
                f"{len(self.ratios)} blocks"
            )
        return self.channel_recombo_block % n

    def split(self, x: Array) -> list[Array]:
        """`[B, F, H, G c]` -> G arrays `[B, F, H, c]`: the channel groups (each runs the same
        weights on its own, as in the reference: folding them into the batch would change
        XLA's summation order in the 1x1 convs)."""
        return jnp.split(x, self.channel_splits, axis=-1) if self.channel_splits else [x]

    def merge(self, xs: list[Array]) -> Array:
        """Inverse of `split`: groups concatenated on channels, group 0 first."""
        return jnp.concatenate(xs, axis=-1) if len(xs) > 1 else xs[0]

    def stream_counter(self) -> tuple[Array, Any]:
        """(STFT frames already streamed, the cache variable) for the stream masks."""
        seen = self.variable("cache", "frames", lambda: jnp.zeros((), jnp.int32))
        return seen.value, seen


class SpectroStreamEncoder(_Geometry):
    """`audio [B, T, C]` (T a multiple of the hop) -> latents `[B, T / hop, latent_dim]`."""

    @nn.compact
    def __call__(self, audio: Array) -> Array:
        t = audio.shape[1]
        count = t // self.frame_step
        tail = self.frame_length - self.frame_step
        stream = streaming(self)
        delay = self.time_stride  # STFT frames a stream lags: one hop
        if stream:
            # The last STFT frame of latent frame j reads `tail` samples of frame j + 1, so a
            # stream lags one hop: this chunk's frames start a hop before it.
            hop = self.hop_length
            prev = self.variable(
                "cache", "audio", jnp.zeros, (audio.shape[0], hop, audio.shape[2]), audio.dtype
            )
            audio = jnp.concatenate([prev.value, audio], axis=1)
            prev.value = audio[:, t:]
            seen, counter = self.stream_counter()
            counter.value = seen + count
        else:
            audio = jnp.pad(audio, [(0, 0), (0, tail), (0, 0)])
        x = stft(
            audio.astype(jnp.float32), self.frame_length, self.frame_step, self.fft_length, count
        ).astype(self.dtype)

        def mask(rate: int):
            if not stream:
                return None
            return (seen // rate + jnp.arange(count // rate)) >= delay // rate

        recombo = self.recombo() if self.channel_splits else 0
        xs = self.split(x)
        x = None
        base = Conv2d(
            self.base_depth, (self.base_conv_size,) * 2, name="base_conv_first", dtype=self.dtype
        )
        xs = [base(v, mask(1), g) for g, v in enumerate(xs)]
        channels, rate = self.base_depth, 1
        for i, (s, m) in enumerate(zip(self.ratios, self.mults, strict=True)):
            if xs is not None and i == recombo:
                x, xs = self.merge(xs), None
            channels = int(np.round(channels * m))
            block = ResBlock(channels, tuple(s), name=f"encoder_{i}", dtype=self.dtype)
            if xs is None:
                x = block(x, mask(rate))
            else:
                xs = [block(v, mask(rate), g) for g, v in enumerate(xs)]
            rate *= s[0]
        if xs is not None:
            x = self.merge(xs)
        x = ResBlock(x.shape[-1], name="bottleneck", dtype=self.dtype)(x, mask(rate))
        b, f, h, c = x.shape
        x = PointwiseResidual(
            self.latent_dim, h * c, "conv1x1_last", True, self.dtype, name="output_convs"
        )(x.reshape(b, f, 1, h * c))
        return x.reshape(b, f, self.latent_dim)


class SpectroStreamDecoder(_Geometry):
    """latents `[B, F, latent_dim]` -> audio `[B, F * hop, C]`.

    Offline, the last hop is zeros: the decoder looks `lookahead` latent frames ahead (the
    reference's `Lookahead`), so F frames give `(F - lookahead) * hop` samples. Streaming emits
    `F * hop` samples per chunk, `lookahead` frames late (zeros before the first).
    """

    base_depth: int = 64
    lookahead: int = 1

    @nn.compact
    def __call__(self, z: Array) -> Array:
        b, f, _ = z.shape
        n = len(self.ratios)
        total_f = math.prod(r[1] for r in self.ratios)
        bins = self.num_bins // total_f
        if bins * total_f != self.num_bins:
            raise ValueError(
                f"the frequency strides (product {total_f}) do not divide {self.num_bins} bins"
            )
        channels = int(self.base_depth * np.prod(self.mults))
        recombo = self.recombo() if self.channel_splits else None
        splits = self.channel_splits or 1
        x = PointwiseResidual(
            bins * channels,
            bins * channels,
            "conv1x1_first",
            False,
            self.dtype,
            name="input_layer",
        )(z.astype(self.dtype)[:, :, None, :])
        x = x.reshape(b, f, bins, channels)
        xs = None  # the channel groups, once split
        if recombo == n:
            channels *= splits
        x = ResBlock(
            channels, transposed=True, name="input_layers_residual_unit", dtype=self.dtype
        )(x)
        if recombo == n:
            xs, channels = self.split(x), channels // splits
        for i, (s, m) in enumerate(zip(self.ratios[::-1], self.mults[::-1], strict=True)):
            channels = int(np.round(channels / m))
            here = recombo == n - 1 - i
            if here:
                channels *= splits
            block = ResBlock(
                channels, tuple(s), transposed=True, name=f"decoder_{i}", dtype=self.dtype
            )
            if xs is None:
                x = block(x)
            else:
                xs = [block(v, group=g) for g, v in enumerate(xs)]
            if here:
                xs, channels = self.split(x), channels // splits
        out = OutputLayer(
            self.audio_channels * 2 // splits, self.base_conv_size, self.dtype, name="output_layer"
        )
        x = self.merge([out(v, g) for g, v in enumerate(xs if xs is not None else [x])])
        return self._inverse_stft(x.astype(jnp.float32))

    def _inverse_stft(self, spec: Array) -> Array:
        """`[B, F', bins, 2 C]` decoder frames -> `[B, F' * step, C]` (causal overlap-add)."""
        la = self.lookahead * self.time_stride  # decoder frames the output lags
        step, tail = self.frame_step, self.frame_length - self.frame_step
        count = spec.shape[1]
        if streaming(self):
            seen, counter = self.stream_counter()
            counter.value = seen + count
            valid = (seen + jnp.arange(count)) >= la
            spec = jnp.where(valid[None, :, None, None], spec, 0)
        else:
            spec = spec[:, la:]
        y = inverse_stft_frames(spec, self.frame_length, step, self.fft_length)
        y = overlap_add(y, step)
        if streaming(self):
            carry = self.variable(
                "cache", "overlap", jnp.zeros, (y.shape[0], tail, y.shape[2]), y.dtype
            )
            y = y.at[:, :tail].add(carry.value)
            carry.value = y[:, count * step :]
            return y[:, : count * step]
        y = y[:, : y.shape[1] - tail]
        return jnp.pad(y, [(0, 0), (0, la * step), (0, 0)])


class OutputLayer(nn.Module):
    """`output_layer/base_conv_last`: ELU, then the last conv to real/imag channels."""

    features: int
    kernel: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, group: int = 0) -> Array:
        conv = Conv2d(self.features, (self.kernel,) * 2, name="base_conv_last", dtype=self.dtype)
        return conv(nn.elu(x), group=group)
