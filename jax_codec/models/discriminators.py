"""GAN discriminators on waveforms `[B, T, C]`: multi-period (MPD), multi-scale (MSD) and
multi-band multi-resolution STFT (MRD), following DAC's `dac/model/discriminator.py` (C = 1).
A stereo pair (C = 2) enters as two input channels of each first conv, as stable-audio-tools'
stereo discriminators take it; only those convs' weights differ from the mono tree.

Every discriminator returns a list over its sub-discriminators of `(logits, feature_maps)`:
`logits` is the final one-channel map (for the adversarial loss) and `feature_maps` the
activations of every hidden layer (for the L1 feature-matching loss). Outputs are in the
compute `dtype`; parameters are always float32.

At `channels=32` the layer widths are DAC's (MSD uses `channels // 2`, DAC's 16), so parameter
counts match DAC's discriminator: MPD 41.1M, MSD 16.9M, MRD 1.41M.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_codec.models.kernels import grouped_conv1d, period_conv2d, weight_norm
from jax_codec.models.layers import add_bias
from jax_codec.stereo import to_mid_side

Array = jax.Array
Dtype = Any

DEFAULT_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
KINDS = ("mpd", "msd", "mrd")
STEREO_INPUTS = ("channels", "rows", "ms", "ms_level")
MPD_PADS = ("minimal", "dac")
_LEAK = 0.1


def default_discriminator_config() -> ml_collections.ConfigDict:
    """The discriminator config section, DAC's widths; `build_discriminators` consumes it."""
    cfg = ml_collections.ConfigDict()
    # Which discriminators to use, any subset of ("mpd", "msd", "mrd"); DAC uses mpd + mrd.
    cfg.kinds = ("mpd", "msd", "mrd")
    # MPD periods in samples (HiFi-GAN's primes, so the periods share few multiples).
    cfg.periods = (2, 3, 5, 7, 11)
    # MSD downsampling factors (1 = the raw waveform).
    cfg.msd_rates = (1, 2, 4)
    # MRD STFT window lengths in samples, one sub-discriminator each.
    cfg.mrd_window_lengths = (2048, 1024, 512)
    # MRD hop as a fraction of the window (DAC: 0.25).
    cfg.mrd_hop_factor = 0.25
    # MRD frequency bands as fractions of the bins up to Nyquist, one conv stack each.
    cfg.mrd_bands = DEFAULT_BANDS
    # Width base: 32 gives DAC's widths (MPD 32..1024, MRD 32, MSD 16..1024); 4 is CPU-test tiny.
    cfg.channels = 32
    # Remove DC and peak-normalise each input as DAC does, so gain alone cannot fool D.
    cfg.normalize_input = True
    # MPD's reflect padding to a whole period: "minimal" pads (-T) % p samples, "dac" pads
    # p - T % p as DAC does (a whole extra row when p divides T), needed to match its weights.
    cfg.mpd_pad = "minimal"
    # What a joint-stereo model's discriminators see: "rows" each channel as its own mono
    # example (the mono parameter tree, blind to how the channels relate), "channels" the pair
    # as two input channels of one example (they see the stereo image; only each first conv
    # differs from the mono tree; half the discriminator compute), "ms" the mid (L + R) / 2 and
    # the side (L - R) / 2 each as its own mono example (the mono tree; each is peak-normalised
    # on its own, so the side's texture is judged at full scale however quiet it is),
    # "ms_level" the same two rows peak-normalised together (each example's mid and side by
    # one factor, so a quiet side is judged as quiet and a mono passage's side as silence).
    # docs/stereo.md has the ablations behind the default. Mono models are unaffected.
    cfg.stereo = "rows"
    return cfg


def build_discriminators(
    cfg: ml_collections.ConfigDict, dtype: Dtype = jnp.float32
) -> Discriminators:
    """Builds the combined discriminator from a `default_discriminator_config()`-shaped section."""
    return Discriminators(
        kinds=tuple(cfg.kinds),
        periods=tuple(cfg.periods),
        msd_rates=tuple(cfg.msd_rates),
        mrd_window_lengths=tuple(cfg.mrd_window_lengths),
        mrd_hop_factor=float(cfg.mrd_hop_factor),
        mrd_bands=tuple(tuple(b) for b in cfg.mrd_bands),
        channels=int(cfg.channels),
        # "ms_level" input arrives normalised already (`discriminator_input`).
        normalize_input=bool(cfg.normalize_input) and cfg.get("stereo", "rows") != "ms_level",
        mpd_pad=str(cfg.get("mpd_pad", "minimal")),
        dtype=dtype,
    )


def normalize_audio(x: Array) -> Array:
    """Per-example DC removal (per channel) and peak normalisation to 0.8 (over all channels
    together, so a stereo pair keeps its level difference), `[B, T, C] -> [B, T, C]` (DAC's for
    C = 1)."""
    x = x - jnp.mean(x, axis=1, keepdims=True)
    return 0.8 * x / (jnp.max(jnp.abs(x), axis=(1, 2), keepdims=True) + 1e-9)


def fold_channels(audio: Array) -> Array:
    """`[B, T, C]` -> `[B * C, T, 1]`, example-major (each channel its own row)."""
    b, t, c = audio.shape
    if c == 1:
        return audio
    return jnp.swapaxes(audio, 1, 2).reshape(b * c, t, 1)


def fold_mid_side(audio: Array) -> Array:
    """`[B, T, 2]` left/right -> `[2 B, T, 1]`: each example's mid (L + R) / 2, then its side
    (L - R) / 2, each its own row (`discriminator.stereo = "ms"`). Mono passes through."""
    return audio if audio.shape[-1] == 1 else fold_channels(to_mid_side(audio))


def fold_mid_side_level(audio: Array) -> Array:
    """`fold_mid_side` after `normalize_audio` (DC removed per channel, one peak normalisation
    over mid and side together), for discriminators built without their own
    (`discriminator.stereo = "ms_level"`): the side row keeps its level against the mid's.
    Mono is normalised as the discriminators would normalise it."""
    if audio.shape[-1] == 1:
        return normalize_audio(audio)
    return fold_channels(normalize_audio(to_mid_side(audio)))


def discriminator_input(cfg: ml_collections.ConfigDict) -> Callable[[Array], Array]:
    """What the discriminators built from `cfg` see of a `[B, T, C]` batch
    (`cfg.stereo`, one of `STEREO_INPUTS`; see `default_discriminator_config`)."""
    stereo = cfg.get("stereo", "rows")
    if stereo not in STEREO_INPUTS:
        raise ValueError(f"discriminator.stereo={stereo!r}; use one of {STEREO_INPUTS}")
    if stereo == "ms_level":
        # Normalised here, not by the discriminators (`build_discriminators`), so that mid and
        # side share one peak; with normalisation off there is none to share.
        return fold_mid_side_level if cfg.normalize_input else fold_mid_side
    return {"rows": fold_channels, "ms": fold_mid_side, "channels": lambda a: a}[stereo]


class _WNConv(nn.Module):
    """Weight-normalised N-d conv, channels-last, symmetric `k // 2` padding (DAC's).

    Params `weight_v` `[*kernel, Cin // groups, features]`, `weight_g` `[features]`
    (w = g v / |v| per output channel, as torch's weight_norm(dim=0), so DAC checkpoints map
    one to one), `bias` `[features]`. v is drawn like torch's default conv init and g = |v|,
    so the initial weights have torch's scale.
    """

    features: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    groups: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        nd = len(self.kernel_size)
        cin = x.shape[-1]
        if cin % self.groups or self.features % self.groups:
            raise ValueError(f"channels {cin}->{self.features} not divisible by {self.groups}")
        v = self.param(
            "weight_v",
            # torch's kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
            nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            (*self.kernel_size, cin // self.groups, self.features),
        )
        reduce_axes = tuple(range(nd + 1))
        g = self.param("weight_g", lambda _, v_: jnp.sqrt(jnp.sum(v_**2, axis=reduce_axes)), v)
        w = weight_norm(v, g)
        spatial = "DHW"[-nd:]
        dims = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        padding = tuple((k // 2, k // 2) for k in self.kernel_size)
        strides = self.strides or (1,) * nd
        if nd == 2 and self.kernel_size[1] == 1 and strides[1] == 1 and self.groups == 1:
            # MPD's (k, 1) kernels never mix the period's phases (`kernels.period_conv2d`).
            y = period_conv2d(x, w, strides[0], padding[0], self.dtype)
        elif nd == 1 and self.groups > 1:  # MSD (`kernels.grouped_conv1d`)
            y = grouped_conv1d(
                x.astype(self.dtype), w.astype(self.dtype), strides[0], padding[0], self.groups
            )
        else:
            y = jax.lax.conv_general_dilated(
                x.astype(self.dtype),
                w.astype(self.dtype),
                window_strides=strides,
                padding=padding,
                dimension_numbers=dims,
                feature_group_count=self.groups,
            )
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return add_bias(y, b)


def _conv_stack(x: Array, convs: Sequence[_WNConv], post: _WNConv) -> tuple[Array, list[Array]]:
    feats = []
    for conv in convs:
        x = nn.leaky_relu(conv(x), _LEAK)
        feats.append(x)
    return post(x), feats


class PeriodDiscriminator(nn.Module):
    """One MPD branch: `[B, T, 1]` folded to `[B, T/p, p, 1]`, 2D convs over time only.

    Kernels are `(k, 1)`, so the p phases are judged independently with shared weights; this
    is what lets D see periodic structure that a 1D conv with a short kernel misses.
    """

    period: int
    channels: int = 32
    dtype: Dtype = jnp.float32
    # "minimal": pad (-T) % p samples; "dac": p - T % p, DAC's (a whole row when p divides T).
    pad: str = "minimal"

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, list[Array]]:
        b, t, _ = x.shape
        p = self.period
        if self.pad not in MPD_PADS:
            raise ValueError(f"mpd_pad={self.pad!r}; use one of {MPD_PADS}")
        extra = p - t % p if self.pad == "dac" else (-t) % p
        x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)), mode="reflect")
        x = x.reshape(b, -1, p, x.shape[-1])  # audio channels are the first conv's inputs
        c = self.channels
        widths, strides = (c, 4 * c, 16 * c, 32 * c, 32 * c), (3, 3, 3, 3, 1)
        convs = [
            _WNConv(w, (5, 1), (s, 1), dtype=self.dtype, name=f"conv{i}")
            for i, (w, s) in enumerate(zip(widths, strides, strict=True))
        ]
        post = _WNConv(1, (3, 1), dtype=self.dtype, name="conv_post")
        return _conv_stack(x, convs, post)


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN/DAC MPD: one `PeriodDiscriminator` per period. `[B, T, 1]` -> list of
    `(logits [B, ~T/(81 p), p, 1], 5 feature maps)`."""

    periods: Sequence[int] = (2, 3, 5, 7, 11)
    channels: int = 32
    dtype: Dtype = jnp.float32
    pad: str = "minimal"

    @nn.compact
    def __call__(self, x: Array) -> list[tuple[Array, list[Array]]]:
        return [
            PeriodDiscriminator(p, self.channels, self.dtype, self.pad, name=f"period_{p}")(x)
            for p in self.periods
        ]


def _group_count(cin: int, cout: int) -> int:
    # MelGAN/DAC use 4 input channels per group; fall back to a divisor for odd tiny widths.
    g = max(1, cin // 4)
    while cin % g or cout % g:
        g -= 1
    return g


class ScaleDiscriminator(nn.Module):
    """One MSD branch (MelGAN): grouped strided 1D convs on the waveform downsampled by `rate`.

    `[B, T, 1]` -> `(logits [B, ~T/(256 rate), 1], 6 feature maps)`.
    """

    rate: int = 1
    channels: int = 16
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, list[Array]]:
        if self.rate > 1:
            # Box-filter decimation as MelGAN/HiFi-GAN (DAC resamples with a sinc filter): cheap,
            # and the discriminator does not need a clean anti-alias filter to judge coarse shape.
            x = nn.avg_pool(
                x, (self.rate,), strides=(self.rate,), padding="SAME", count_include_pad=False
            )
        c = self.channels
        widths = (c, 4 * c, 16 * c, 64 * c, 64 * c, 64 * c)
        convs = [_WNConv(c, (15,), dtype=self.dtype, name="conv0")]
        for i in range(1, 5):
            groups = _group_count(widths[i - 1], widths[i])
            convs.append(_WNConv(widths[i], (41,), (4,), groups, dtype=self.dtype, name=f"conv{i}"))
        convs.append(_WNConv(widths[5], (5,), dtype=self.dtype, name="conv5"))
        post = _WNConv(1, (3,), dtype=self.dtype, name="conv_post")
        return _conv_stack(x, convs, post)


class MultiScaleDiscriminator(nn.Module):
    """MelGAN-style MSD, one `ScaleDiscriminator` per rate. `[B, T, 1]` -> list of
    `(logits, 6 feature maps)`."""

    rates: Sequence[int] = (1, 2, 4)
    channels: int = 16
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> list[tuple[Array, list[Array]]]:
        return [
            ScaleDiscriminator(r, self.channels, self.dtype, name=f"rate_{r}")(x)
            for r in self.rates
        ]


def stft(x: Array, window_length: int, hop_length: int) -> Array:
    """Complex STFT with a periodic Hann window, aligned to conv strides. `[B, T]` ->
    `[B, ceil(T/hop), window_length // 2 + 1]`.

    Same frames as audiotools' `stft(match_stride=True)` (DAC's MRD): reflect-pad
    `(w - hop) / 2` each side plus the tail to a whole hop, so frame i is centred on sample
    `i * hop + hop / 2`. Computed in float32.
    """
    w, hop = window_length, hop_length
    if w % hop or (w - hop) % 2:
        raise ValueError(f"window {w} must be a multiple of hop {hop} with (w - hop) even")
    t = x.shape[-1]
    n_frames = -(-t // hop)
    pad = (w - hop) // 2
    x = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad + n_frames * hop - t)), mode="reflect")
    # Padded length is (n_frames - 1) * hop + w: frames are runs of w // hop whole hops, which
    # slicing builds without a gather (cheaper to differentiate than indexing).
    hops = x.reshape(x.shape[0], -1, hop)
    r = w // hop
    frames = jnp.stack([hops[:, j : j + n_frames] for j in range(r)], axis=2)
    frames = frames.reshape(x.shape[0], n_frames, w)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(w) / w)
    return jnp.fft.rfft(frames * window.astype(np.float32), axis=-1)


def band_bins(window_length: int, bands: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Bin ranges `[lo, hi)` of each band (fractions of Nyquist), rounded down as DAC does."""
    n_bins = window_length // 2 + 1
    edges = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
    if any(hi <= lo for lo, hi in edges):
        raise ValueError(f"window {window_length} too short for bands {bands}: {edges}")
    return edges


class STFTDiscriminator(nn.Module):
    """One MRD branch (DAC): complex STFT as 2 channels (real, imag) per audio channel, a conv stack per band
    that downsamples frequency by 8, bands concatenated along frequency, then a post conv.

    `[B, T, 1]` -> `(logits [B, ceil(T/hop), sum_b ceil(bins_b/8), 1], 5 * n_bands maps)`.
    """

    window_length: int = 2048
    hop_factor: float = 0.25
    bands: Sequence[tuple[float, float]] = DEFAULT_BANDS
    channels: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, list[Array]]:
        b, t, n_ch = x.shape
        rows = jnp.moveaxis(x, 2, 1).reshape(b * n_ch, t)
        spec = stft(rows, self.window_length, int(self.window_length * self.hop_factor))
        spec = jnp.moveaxis(spec.reshape(b, n_ch, *spec.shape[1:]), 1, -1)  # [B, F, N, C]
        # Real and imaginary parts, not magnitude: D can then judge phase coherence too (and,
        # for a stereo input, the phase between the channels): [B, F, N, 2 C], (re, im) per channel.
        spec = jnp.stack([spec.real, spec.imag], axis=-1).reshape(*spec.shape[:3], 2 * n_ch)
        spec = spec.astype(self.dtype)
        c, feats, outs = self.channels, [], []
        for i, (lo, hi) in enumerate(band_bins(self.window_length, self.bands)):
            # Strides thin out frequency only; time keeps the STFT's frame rate.
            layers = [((3, 9), (1, 1)), ((3, 9), (1, 2)), ((3, 9), (1, 2))]
            layers += [((3, 9), (1, 2)), ((3, 3), (1, 1))]
            y = spec[:, :, lo:hi]
            for j, (k, s) in enumerate(layers):
                y = _WNConv(c, k, s, dtype=self.dtype, name=f"band{i}_conv{j}")(y)
                y = nn.leaky_relu(y, _LEAK)
                feats.append(y)
            outs.append(y)
        y = jnp.concatenate(outs, axis=2)
        logits = _WNConv(1, (3, 3), dtype=self.dtype, name="conv_post")(y)
        return logits, feats


class MultiBandSTFTDiscriminator(nn.Module):
    """DAC's multi-band multi-resolution STFT discriminator (MRD), one `STFTDiscriminator`
    per window length. `[B, T, 1]` -> list of `(logits, feature maps)`."""

    window_lengths: Sequence[int] = (2048, 1024, 512)
    hop_factor: float = 0.25
    bands: Sequence[tuple[float, float]] = DEFAULT_BANDS
    channels: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> list[tuple[Array, list[Array]]]:
        return [
            STFTDiscriminator(
                w, self.hop_factor, self.bands, self.channels, self.dtype, name=f"window_{w}"
            )(x)
            for w in self.window_lengths
        ]


class Discriminators(nn.Module):
    """The chosen discriminators behind one module, as DAC's `Discriminator`.

    `[B, T, 1]` -> list of `(logits, feature_maps)`, in the order MPD periods, MSD rates, MRD
    windows (restricted to `kinds`). `channels` is the width base: MPD and MRD use it, MSD
    `channels // 2`, which at 32 reproduces DAC.
    """

    kinds: Sequence[str] = KINDS
    periods: Sequence[int] = (2, 3, 5, 7, 11)
    msd_rates: Sequence[int] = (1, 2, 4)
    mrd_window_lengths: Sequence[int] = (2048, 1024, 512)
    mrd_hop_factor: float = 0.25
    mrd_bands: Sequence[tuple[float, float]] = DEFAULT_BANDS
    channels: int = 32
    normalize_input: bool = True
    mpd_pad: str = "minimal"
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown discriminator kinds {unknown}; valid kinds: {KINDS}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> list[tuple[Array, list[Array]]]:
        if self.normalize_input:
            x = normalize_audio(x.astype(jnp.float32))
        outputs = []
        if "mpd" in self.kinds:
            outputs += MultiPeriodDiscriminator(
                self.periods, self.channels, self.dtype, self.mpd_pad, name="mpd"
            )(x)
        if "msd" in self.kinds:
            msd_width = max(1, self.channels // 2)
            outputs += MultiScaleDiscriminator(self.msd_rates, msd_width, self.dtype, name="msd")(x)
        if "mrd" in self.kinds:
            outputs += MultiBandSTFTDiscriminator(
                self.mrd_window_lengths,
                self.mrd_hop_factor,
                self.mrd_bands,
                self.channels,
                self.dtype,
                name="mrd",
            )(x)
        return outputs


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree (works on `jax.eval_shape` outputs too)."""
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
