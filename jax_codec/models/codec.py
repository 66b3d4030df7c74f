"""The codec: encoder -> hierarchical residual VQ -> decoder.

`Codec.__call__` is the training forward pass; `encode` / `decode` are the inference path and
give exactly the forward output for the same number of quantizers (no dropout).
Audio is `[B, T, C]` with C = `channels`: 1 (mono), or 2 for a joint-stereo model, whose
encoder sees both channels (as left/right or mid/side, `stereo`) and whose decoder outputs both
from ONE code stream, shaped as a mono model's codes (`jax_codec.stereo`, docs/stereo.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections

from jax_codec.models.decoder import Decoder
from jax_codec.models.encoder import Encoder
from jax_codec.models.quantizer import HierarchicalRVQ
from jax_codec.models.seanet import SEANetDecoder, SEANetEncoder
from jax_codec.models.spectrostream import SpectroStreamDecoder, SpectroStreamEncoder
from jax_codec.stereo import STEREO_MODES, from_mid_side, to_mid_side

Array = jax.Array


@flax.struct.dataclass
class CodecOutput:
    """Forward-pass result.

    audio: `[B, T, C]` reconstruction, same length and channels as the input.
    codes: one int32 `[B, F / strides[i]]` per level (levels beyond `n_quantizers` included).
    n_quantizers: `[B]` levels used per example.
    latents: `[B, F, D]` encoder output; quantized: `[B, F, D]` sum of the used levels (D:
      `Codec.latent_channels`, the side latent's dims included).
    losses: `{'commitment', 'codebook', 'residual'}` scalars. stats: per-level codebook usage.
    projected: per level, the encoder output in code space (dead-code restart candidates).
    """

    audio: Array
    codes: tuple[Array, ...]
    n_quantizers: Array
    latents: Array
    quantized: Array
    losses: dict
    stats: dict
    projected: tuple[Array, ...] = ()


class MidSideDecoders(nn.Module):
    """Two decoders over one latent (`Codec.side_decoder_width`): `mid` makes the mid, `side`
    the side; `[B, F, D] -> [B, T, 2]` (mid, side), as a joint mid/side `Decoder` outputs.

    The side shares the code stream and the encoder with the mid, but none of the decoder's
    layers, so its decoder capacity is its own, as in dual mono (docs/stereo.md).
    `mid_dims` (`Codec.side_latent_dim`): the mid decoder reads only the first this many latent
    dims (the joint latent), the side decoder all of them (joint and side latent); 0: both read
    all."""

    mid: nn.Module
    side: nn.Module
    mid_dims: int = 0

    def __call__(self, z: Array, noise_key: Array | None = None) -> Array:
        # Noise blocks (arch "snac", noise=True): each decoder draws its own noise.
        keys = (None, None) if noise_key is None else tuple(jax.random.split(noise_key))
        z_mid = z[..., : self.mid_dims] if self.mid_dims else z
        return jnp.concatenate([self.mid(z_mid, keys[0]), self.side(z, keys[1])], axis=-1)


class Codec(nn.Module):
    """Causal (streamable) or centred convolutional codec with hierarchical residual VQ."""

    sample_rate: int = 44100
    encoder_width: int = 24
    encoder_strides: Sequence[int] = (2, 4, 8, 8)
    latent_dim: int = 512
    decoder_width: int = 512
    decoder_strides: Sequence[int] = (8, 8, 4, 2)
    dilations: Sequence[int] = (1, 3, 9)
    vq_strides: Sequence[int] = (4, 2, 1, 1, 1, 1, 1, 1)
    codebook_size: int = 1024
    codebook_dim: int = 8
    quantizer_dropout: float = 0.5
    causal: bool = True
    dtype: Any = jnp.float32
    # Rematerialise encoder/decoder blocks in the backward pass (training memory only).
    remat: bool = False
    # Architecture options for imported models (configs/dac_*.py, configs/encodec_24khz.py,
    # configs/snac_*.py, configs/spectrostream_48khz.py): "dac" (Snake residual units,
    # `Encoder`/`Decoder`), "seanet" (EnCodec, `seanet.py`), "snac" (DAC's modules with SNAC's
    # options below) or "spectrostream" (STFT and 2-D convs, `spectrostream.py`). A config keeps
    # each one's own options in `model.seanet` / `model.snac` / `model.spectrostream`
    # (`arch_options`).
    arch: str = "dac"
    # "factorized" (DAC's projected, L2-normalised VQ), "plain" (EnCodec's Euclidean VQ) or
    # "euclidean" (SpectroStream's: the same VQ, its distance and rounding).
    vq_kind: str = "factorized"
    # Conv padding: "zeros" or "reflect" (EnCodec's; seanet only, offline only).
    pad_mode: str = "zeros"
    # seanet only: LSTM layers at the bottleneck (0: none), residual compression, identity skip.
    lstm_layers: int = 0
    residual_compress: int = 2
    true_skip: bool = False
    # Transposed convs: "exact" or "symmetric" trim (DAC's odd strides), and weight-norm axis
    # "out" or "in" (torch's weight_norm on ConvTranspose1d; see layers.WNConvTranspose1d).
    transpose_trim: str = "exact"
    transpose_norm: str = "out"
    # Output activation: "tanh" or "none" (EnCodec).
    final_activation: str = "tanh"
    # arch="snac" only (configs/snac_*.py): depthwise k=7 convs (residual units, the encoder's
    # last conv, the decoder's first), local attention over windows of `attn_window` latent
    # frames in encoder and decoder (0: none), and noise blocks in the decoder blocks.
    # Noise: drawn from the "noise" RNG stream when the caller passes one
    # (`apply(..., rngs={"noise": key})`), else, in training (train=True), from the "dropout"
    # stream the train step already passes; otherwise it is zero, so encode/decode are
    # deterministic and windowed decoding equals whole-signal decoding (layers.NoiseBlock).
    depthwise: bool = False
    attn_window: int = 0
    noise: bool = False
    # Audio channels: 1 (mono) or 2 (joint stereo: both channels in, one code stream, both
    # out). Only the encoder's first conv and the decoder's last conv depend on it.
    channels: int = 1
    # What a stereo model's convolutions see: "lr" (left, right) or "ms" (mid (L+R)/2, side
    # (L-R)/2; the decoder's mid/side output is turned back into left/right). Mono ignores it.
    stereo: str = "ms"
    # stereo="ms" only: the encoder sees the side times this; the decoder outputs the side
    # itself (a gain > 1 brings a quiet side to the mid's level at the encoder's input).
    side_gain: float = 1.0
    # Delayed stereo fusion (arch "dac" / "snac", channels=2): the encoder's first conv and first
    # `stereo_split_blocks` blocks, and the decoder's last as many blocks and last conv, code
    # each channel (mid and side, or left and right) apart with the same weights; the blocks
    # between code them jointly. 0: joint from the first conv to the last.
    stereo_split_blocks: int = 0
    # arch "dac" / "snac": the fewest channels a decoder block may have (0: halve all the way).
    # A narrow decoder's last, full-rate block otherwise has width / 2^len(strides) channels,
    # which a joint-stereo model must split between mid and side (docs/stereo.md).
    decoder_min_width: int = 0
    # arch "dac" / "snac", channels=2, stereo="ms": the decoder adds to its side a prediction
    # from its decoded mid over this many learned bands (Decoder.side_bands; 0: none).
    side_from_mid: int = 0
    # arch "dac" / "snac", channels=2, stereo="ms": decode the side with a decoder of its own,
    # this wide (0: one decoder outputs mid and side). Both read the same latent, so the code
    # stream, its bitrate and the encoder are unchanged; the side no longer shares the mid's
    # decoder layers (`MidSideDecoders`).
    side_decoder_width: int = 0
    # With `side_decoder_width`: bits only the side decoder reads. The encoder outputs a side
    # latent of this many dims after the `latent_dim` joint ones; the quantizer levels listed in
    # `side_levels` (never level 0) quantize it, the others the joint latent; the mid decoder
    # reads the joint latent, the side decoder both (HierarchicalRVQ's side levels).
    side_latent_dim: int = 0
    side_levels: Sequence[int] = ()
    # arch "dac" / "snac", channels=2, stereo="ms": scale the decoded side by a gate per frame
    # read from the latent (Decoder.side_gate), so a near-mono passage can decode near-mono.
    side_gate: bool = False
    # arch="spectrostream" only (`spectrostream.py`): the STFT's frame, hop and FFT lengths; per
    # 2-D block its (time, frequency) strides and channel multiplier (encoder order); the
    # first/last conv's kernel; delayed stereo fusion (channels coded apart by the blocks before
    # `channel_recombo_block`); latent frames the decoder looks ahead. `encoder_width` /
    # `decoder_width` are the 2-D convs' base depths.
    stft_frame_length: int = 960
    stft_frame_step: int = 480
    stft_fft_length: int = 960
    ratios2d: Sequence[tuple[int, int]] = ((1, 2), (1, 2), (1, 3), (1, 2), (1, 2), (2, 2), (2, 1))
    mults: Sequence[float] = (2, 1, 2, 1, 1, 2, 1)
    base_conv_size: int = 7
    channel_splits: int = 2
    channel_recombo_block: int = -2
    decoder_lookahead: int = 1

    def setup(self):
        if self.channels not in (1, 2):
            raise ValueError(f"channels={self.channels}: use 1 (mono) or 2 (joint stereo)")
        if self.stereo not in STEREO_MODES:
            raise ValueError(f"stereo={self.stereo!r}: use one of {STEREO_MODES}")
        if not self.side_gain > 0:
            raise ValueError(f"side_gain={self.side_gain}: use a positive gain (1 = none)")
        if self.side_gain != 1.0 and (self.channels != 2 or self.stereo != "ms"):
            raise ValueError(
                f"side_gain={self.side_gain} needs a mid/side model (channels=2, stereo='ms'); "
                "set model.side_gain=1"
            )
        joint_ms = (
            self.channels == 2
            and self.stereo == "ms"
            and self.arch in ("dac", "snac")
            and not self.stereo_split_blocks
        )
        if self.side_from_mid and not joint_ms:
            raise ValueError(
                f"side_from_mid={self.side_from_mid} needs a joint mid/side model (channels=2, "
                "stereo='ms', arch 'dac' or 'snac', stereo_split_blocks=0); set side_from_mid=0"
            )
        if self.side_decoder_width and (not joint_ms or self.side_from_mid):
            raise ValueError(
                f"side_decoder_width={self.side_decoder_width} needs a joint mid/side model "
                "(channels=2, stereo='ms', arch 'dac' or 'snac', stereo_split_blocks=0, "
                "side_from_mid=0); set side_decoder_width=0"
            )
        if (self.side_latent_dim or self.side_levels) and not (
            self.side_decoder_width and self.side_latent_dim > 0 and self.side_levels
        ):
            raise ValueError(
                f"side_latent_dim={self.side_latent_dim}, side_levels={tuple(self.side_levels)}:"
                " side bits need both (a positive dim, a level list) and a side decoder "
                "(side_decoder_width > 0); set side_latent_dim=0 and side_levels=()"
            )
        if self.side_gate and (not joint_ms or self.side_from_mid or self.side_decoder_width):
            raise ValueError(
                "side_gate=True needs a joint mid/side model (channels=2, stereo='ms', arch "
                "'dac' or 'snac', stereo_split_blocks=0, side_from_mid=0, "
                "side_decoder_width=0); set side_gate=False"
            )
        if self.stereo_split_blocks and (self.channels != 2 or self.arch not in ("dac", "snac")):
            raise ValueError(
                f"stereo_split_blocks={self.stereo_split_blocks} needs a stereo model "
                "(channels=2) of arch 'dac' or 'snac'; set stereo_split_blocks=0"
            )
        if self.arch == "spectrostream":
            self._setup_spectrostream()
        elif self.arch == "seanet":
            if self.depthwise or self.attn_window or self.noise:
                raise ValueError("depthwise, attn_window and noise need arch='snac'")
            seanet = dict(
                causal=self.causal,
                pad_mode=self.pad_mode,
                lstm_layers=self.lstm_layers,
                compress=self.residual_compress,
                true_skip=self.true_skip,
                dtype=self.dtype,
            )
            self.encoder = SEANetEncoder(
                self.encoder_width,
                tuple(self.encoder_strides),
                self.latent_dim,
                tuple(self.dilations),
                **seanet,
            )
            self.decoder = SEANetDecoder(
                self.decoder_width,
                tuple(self.decoder_strides),
                self.channels,
                tuple(self.dilations),
                transpose_trim=self.transpose_trim,
                transpose_norm=self.transpose_norm,
                final_activation=self.final_activation,
                **seanet,
            )
        elif self.arch in ("dac", "snac"):
            if self.pad_mode != "zeros" or self.lstm_layers:
                raise ValueError("pad_mode='reflect' and lstm_layers need arch='seanet'")
            snac = self.arch == "snac"
            if not snac and (self.depthwise or self.attn_window or self.noise):
                raise ValueError("depthwise, attn_window and noise need arch='snac'")
            self.encoder = Encoder(
                self.encoder_width,
                tuple(self.encoder_strides),
                self.latent_channels,
                tuple(self.dilations),
                self.causal,
                self.dtype,
                remat=self.remat,
                arch=self.arch,
                depthwise=self.depthwise,
                attn_window=self.attn_window,
                split_blocks=self.stereo_split_blocks,
            )
            decoder = functools.partial(
                Decoder,
                dilations=tuple(self.dilations),
                causal=self.causal,
                dtype=self.dtype,
                remat=self.remat,
                transpose_trim=self.transpose_trim,
                transpose_norm=self.transpose_norm,
                final_activation=self.final_activation,
                depthwise=self.depthwise,
                attn_window=self.attn_window,
                noise=self.noise,
                min_width=self.decoder_min_width,
            )
            strides = tuple(self.decoder_strides)
            if self.side_decoder_width:
                self.decoder = MidSideDecoders(
                    decoder(self.decoder_width, strides, 1),
                    decoder(self.side_decoder_width, strides, 1),
                    mid_dims=self.latent_dim if self.side_latent_dim else 0,
                )
            else:
                self.decoder = decoder(
                    self.decoder_width,
                    strides,
                    self.channels,
                    split_blocks=self.stereo_split_blocks,
                    side_bands=self.side_from_mid,
                    side_gate=self.side_gate,
                )
        else:
            raise ValueError(
                f"model.arch={self.arch!r}: use 'dac', 'seanet', 'snac' or 'spectrostream'"
            )
        self.quantizer = HierarchicalRVQ(
            self.latent_dim,
            tuple(self.vq_strides),
            self.codebook_size,
            self.codebook_dim,
            self.quantizer_dropout,
            kind=self.vq_kind,
            side_levels=tuple(self.side_levels),
            side_dim=self.side_latent_dim,
        )

    def _setup_spectrostream(self) -> None:
        if self.depthwise or self.attn_window or self.noise or self.lstm_layers:
            raise ValueError(
                "depthwise, attn_window, noise and lstm_layers are not SpectroStream's"
            )
        geometry = dict(
            frame_length=self.stft_frame_length,
            frame_step=self.stft_frame_step,
            fft_length=self.stft_fft_length,
            ratios=tuple(tuple(r) for r in self.ratios2d),
            mults=tuple(self.mults),
            base_conv_size=self.base_conv_size,
            channel_splits=self.channel_splits,
            channel_recombo_block=self.channel_recombo_block,
            latent_dim=self.latent_dim,
            audio_channels=self.channels,
            dtype=self.dtype,
        )
        hop = self.stft_frame_step * math.prod(r[0] for r in self.ratios2d)
        if self.hop_length != hop:
            raise ValueError(
                f"encoder_strides {tuple(self.encoder_strides)} multiply to {self.hop_length}, "
                f"SpectroStream's hop is {hop} (STFT step x the blocks' time strides): set "
                f"encoder_strides to ({self.stft_frame_step}, <the time strides>)"
            )
        self.encoder = SpectroStreamEncoder(base_depth=self.encoder_width, **geometry)
        self.decoder = SpectroStreamDecoder(
            base_depth=self.decoder_width, lookahead=self.decoder_lookahead, **geometry
        )

    # ---- static facts derived from the architecture (usable on an unbound module) ----
    @property
    def hop_length(self) -> int:
        """Samples per full-rate latent frame."""
        return math.prod(self.encoder_strides)

    @property
    def latent_channels(self) -> int:
        """Dims of the encoder's output and the quantizer's: the joint latent, then the side
        latent of a model with side bits."""
        return self.latent_dim + self.side_latent_dim

    @property
    def num_quantizers(self) -> int:
        return len(self.vq_strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def frame_rates(self) -> tuple[float, ...]:
        """Code frame rate (Hz) of each level."""
        return tuple(self.frame_rate / s for s in self.vq_strides)

    @property
    def block_frames(self) -> int:
        """Latent frames of the smallest self-contained block: the lcm of the level strides
        and of the attention window (SNAC), so that pooling and attention windows align."""
        return math.lcm(*self.vq_strides, self.attn_window or 1)

    @property
    def length_multiple(self) -> int:
        """Inputs are right-padded with zeros to a multiple of this many samples (SNAC's
        `preprocess`: hop * lcm(vq_strides[0], attn_window))."""
        return self.hop_length * self.block_frames

    @property
    def encoder_lookahead_frames(self) -> int:
        """Frames after its own that a latent frame reads (SpectroStream's STFT reaches into the
        next frame), so a stream encodes frame j once frame j + this has arrived."""
        return 1 if self.arch == "spectrostream" else 0

    @property
    def decoder_lookahead_frames(self) -> int:
        """Latent frames after a frame that its decoded audio needs (SpectroStream's decoder
        lookahead): offline decoding of F frames yields (F - this) * hop samples, so `encode`
        pads this many more frames of zeros and a stream emits audio this many frames late."""
        return self.decoder_lookahead if self.arch == "spectrostream" else 0

    @property
    def latency_samples(self) -> int | None:
        """Algorithmic latency of the causal model, `None` if not causal.

        A full-rate frame needs its `hop` samples; a level of stride s waits for s frames before
        its code exists; causal transposed convs add no lookahead. So output sample t depends on
        inputs up to t + max(s) * hop - 1, and a stream emits it max(s) * hop samples late.
        SpectroStream adds its encoder's and decoder's lookahead, a frame each.
        """
        if not self.causal:
            return None
        lookahead = self.encoder_lookahead_frames + self.decoder_lookahead_frames
        return self.hop_length * (max(self.vq_strides) + lookahead)

    @property
    def latency_ms(self) -> float | None:
        lat = self.latency_samples
        return None if lat is None else 1000.0 * lat / self.sample_rate

    def bitrate_kbps(self, n_quantizers: int | None = None) -> float:
        """Bitrate (kbps) when using the first `n_quantizers` levels, before entropy coding;
        for all `channels` together (one code stream)."""
        n = self.num_quantizers if n_quantizers is None else n_quantizers
        bits = math.log2(self.codebook_size)
        return sum(self.frame_rates[:n]) * bits / 1000.0

    def check_audio(self, audio: Array) -> None:
        """Raise a ValueError naming the fix unless `audio` is `[B, T, channels]`."""
        if audio.ndim == 3 and audio.shape[-1] == self.channels:
            return
        kind = "mono" if self.channels == 1 else "stereo"
        raise ValueError(
            f"this Codec is {kind} and expects audio shaped [batch, samples, {self.channels}], "
            f"got {tuple(audio.shape)}; convert it with "
            f"jax_codec.stereo.match_channels(audio, {self.channels}) (duplicates mono, mixes "
            "down stereo)"
            + (", or fold the channels into the batch to code them apart" if kind == "mono" else "")
        )

    def to_model_channels(self, audio: Array) -> Array:
        """`[B, T, channels]` audio -> what the encoder sees (mid/side for `stereo="ms"`)."""
        self.check_audio(audio)
        if self.channels != 2 or self.stereo != "ms":
            return audio
        ms = to_mid_side(audio)
        if self.side_gain == 1.0:
            return ms
        return ms * jnp.asarray([1.0, self.side_gain], ms.dtype)

    def from_model_channels(self, y: Array) -> Array:
        """The decoder's output -> `[B, T, channels]` audio (left/right)."""
        return from_mid_side(y) if self.channels == 2 and self.stereo == "ms" else y

    def _pad(self, audio: Array) -> Array:
        self.check_audio(audio)
        t = audio.shape[1]
        m = self.length_multiple
        if self.pad_mode == "reflect" and m == self.hop_length:
            # EnCodec: each strided conv pads its own input (by reflection) to a whole frame.
            return audio
        padded = -(-t // m) * m + self.decoder_lookahead_frames * self.hop_length
        return jnp.pad(audio, ((0, 0), (0, padded - t), (0, 0)))

    # ---- forward / inference ----
    def __call__(
        self, audio: Array, n_quantizers: int | None = None, train: bool = False
    ) -> CodecOutput:
        """`audio [B, T, C]` -> CodecOutput. Training draws the 'dropout' RNG stream."""
        t = audio.shape[1]
        z = self.encoder(self.to_model_channels(self._pad(audio)))
        q = self.quantizer(z, n_quantizers, train)
        y = self.from_model_channels(self.decoder(q.quantized, **self._noise(train)))[:, :t]
        return CodecOutput(
            audio=y,
            codes=q.codes,
            n_quantizers=q.n_quantizers,
            latents=z,
            quantized=q.quantized,
            losses={"commitment": q.commitment, "codebook": q.codebook, "residual": q.residual},
            stats=q.stats,
            projected=q.projected,
        )

    def encode(self, audio: Array, n_quantizers: int | None = None) -> tuple[Array, ...]:
        """`audio [B, T, C]` -> codes of the first `n_quantizers` levels, `[B, F / s_i]` each
        (one code stream whatever C)."""
        z = self.encoder(self.to_model_channels(self._pad(audio)))
        return self.quantizer.encode(z, n_quantizers)

    def decode(self, codes: Sequence[Array], length: int | None = None) -> Array:
        """Codes (the first `len(codes)` levels) -> `[B, T, C]`, cut to `length` if given."""
        y = self.decoder(self.quantizer.decode(codes), **self._noise(False))
        y = self.from_model_channels(y)
        return y if length is None else y[:, :length]

    def _noise(self, train: bool) -> dict:
        """The decoder's `noise_key` argument (see the `noise` field); {} without noise blocks."""
        if not self.noise or self.arch != "snac":
            return {}
        if self.has_rng("noise"):
            return {"noise_key": self.make_rng("noise")}
        if train and self.has_rng("dropout"):
            return {"noise_key": self.make_rng("dropout")}
        return {"noise_key": None}


def resolve_dtype(name: str) -> Any:
    """ "auto" -> bfloat16 on GPU/TPU, float32 on CPU; otherwise `jnp.dtype(name)`."""
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    return jnp.dtype(name)


# Options of one architecture each: presets keep them in `model.seanet` / `model.snac` (read
# only when `model.arch` names that architecture); configs saved before that (config.json of
# older runs) have them at the top of `model`, where they are read whatever the arch.
_ARCH_OPTIONS = {
    "seanet": {"pad_mode": "zeros", "lstm_layers": 0, "residual_compress": 2, "true_skip": False},
    "snac": {"depthwise": False, "attn_window": 0, "noise": False},
    "spectrostream": {
        "stft_frame_length": 960,
        "stft_frame_step": 480,
        "stft_fft_length": 960,
        "ratios2d": ((1, 2), (1, 2), (1, 3), (1, 2), (1, 2), (2, 2), (2, 1)),
        "mults": (2, 1, 2, 1, 1, 2, 1),
        "base_conv_size": 7,
        "channel_splits": 2,
        "channel_recombo_block": -2,
        "decoder_lookahead": 1,
    },
}


def arch_options(model_config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The architecture-specific `Codec` fields of a `config.model` section, e.g.
    `{"pad_mode": "reflect", "lstm_layers": 2, ..., "attn_window": 0, ...}`."""
    c = model_config
    arch = c.get("arch", "dac")
    options = {}
    for name, defaults in _ARCH_OPTIONS.items():
        section = c.get(name) if arch == name else None
        for key, default in defaults.items():
            if key in c:  # an older config.json
                options[key] = c[key]
            elif section is not None and key in section:
                options[key] = section[key]
            else:
                options[key] = default
    options["lstm_layers"] = int(options["lstm_layers"])
    options["residual_compress"] = int(options["residual_compress"])
    options["true_skip"] = bool(options["true_skip"])
    options["depthwise"] = bool(options["depthwise"])
    options["attn_window"] = int(options["attn_window"] or 0)
    options["noise"] = bool(options["noise"])
    options["ratios2d"] = tuple(tuple(int(v) for v in r) for r in options["ratios2d"])
    options["mults"] = tuple(options["mults"])
    return options


def build_codec(model_config: ml_collections.ConfigDict, dtype: Any = None) -> Codec:
    """Codec from a `config.model` section (see `jax_codec.configs.common.default_config`)."""
    c = model_config
    return Codec(
        sample_rate=c.sample_rate,
        encoder_width=c.encoder_width,
        encoder_strides=tuple(c.encoder_strides),
        latent_dim=c.latent_dim,
        decoder_width=c.decoder_width,
        decoder_strides=tuple(c.decoder_strides),
        dilations=tuple(c.dilations),
        vq_strides=tuple(c.vq_strides),
        codebook_size=c.codebook_size,
        codebook_dim=c.codebook_dim,
        quantizer_dropout=c.quantizer_dropout,
        causal=c.causal,
        dtype=resolve_dtype(dtype or c.dtype),
        remat=bool(c.get("remat", False)),
        arch=c.get("arch", "dac"),
        vq_kind=c.get("quantizer", "factorized"),
        transpose_trim=c.get("transpose_trim", "exact"),
        transpose_norm=c.get("transpose_norm", "out"),
        final_activation=c.get("final_activation", "tanh"),
        channels=int(c.get("channels", 1)),
        stereo=str(c.get("stereo", "ms")),
        side_gain=float(c.get("side_gain", 1.0)),
        stereo_split_blocks=int(c.get("stereo_split_blocks", 0)),
        decoder_min_width=int(c.get("decoder_min_width", 0)),
        side_from_mid=int(c.get("side_from_mid", 0)),
        side_decoder_width=int(c.get("side_decoder_width", 0)),
        side_gate=bool(c.get("side_gate", False)),
        side_latent_dim=int(c.get("side_latent_dim", 0)),
        side_levels=tuple(int(i) for i in c.get("side_levels", ())),
        **arch_options(c),
    )
