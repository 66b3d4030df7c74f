"""The codec behind the demo: loaded once, compiled once, run on inputs padded to a few lengths.

`DemoModel` wraps a `LoadedCodec` (the codec, its weights and what a `.jcodec` header needs). `encode` runs the jitted encoder and quantizer that `chunked.iter_encode` uses
(so the codes, hence the file, are those of `python -m jax_codec compress`) on the whole signal,
zero-padded to the next of a few bucket lengths up to `max_seconds` (`bucket_lengths`); `decode`
runs the decoder on codes padded the same way, the unused levels masked out, so a change of
bitrate does not recompile either. `warmup()` compiles every bucket at startup; after it, no
upload compiles anything.

Padding is exact for a causal model: no output depends on later samples. A non-causal model
looks ahead, so its input is padded only to the codec's length multiple, exactly as `compress`
pads it, and each new input length compiles once.

Channels, as in a `.jcodec` file: a mono model codes them one at a time (batch 1), independent
streams; a joint-stereo model codes the pair as one stream (a mono input duplicated), and its
decoded left and right are given back as they are, or mixed down when the input was mono.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.inference import chunked, codec_io
from jax_codec.inference import streaming as st
from jax_codec.inference.api import LoadedCodec
from jax_codec.stereo import match_channels

log = logging.getLogger(__name__)

# Bucket lengths as fractions of the longest input: short clips do not pay for 30 s of compute.
BUCKET_FRACTIONS = (1 / 6, 1 / 2, 1.0)
DEFAULT_CHUNK_MS = 20.0


def _decode_masked(module, frame_codes, mask):
    """Frame-rate codes ``[B, F, K]`` -> audio ``[B, F * hop, C]``, level i weighted by mask[i].

    The same sum as `streaming`'s decoder in the same order; a level with mask 0 adds exactly 0.
    """
    z = None
    for i in range(frame_codes.shape[-1]):
        q = module.quantizer.decode_level(i, frame_codes[..., i]) * mask[i]
        z = q if z is None else z + q
    return module.from_model_channels(module.decoder(z))


def bucket_lengths(codec, max_seconds: float, fractions=BUCKET_FRACTIONS) -> tuple[int, ...]:
    """Padded input lengths in samples (multiples of the codec's length multiple), ascending."""
    m = codec.length_multiple
    top = max(1, int(np.ceil(max_seconds * codec.sample_rate / m)))
    return tuple(sorted({max(1, int(np.ceil(f * top))) * m for f in fractions}))


class DemoModel:
    """A `LoadedCodec` with its compiled demo paths. Thread-safe (one call runs at a time)."""

    def __init__(self, loaded: LoadedCodec, max_seconds: float = 30.0, source: str = ""):
        codec = loaded.codec
        self.loaded = loaded
        self.codec = codec
        self.params = loaded.params
        self.max_seconds = float(max_seconds)
        self.source = source or loaded.checkpoint or ""
        self.variables = st.inference_variables(loaded.params, codec)
        self.bucketed = bool(codec.causal)
        self.buckets = bucket_lengths(codec, max_seconds) if self.bucketed else ()
        self.lock = threading.RLock()
        self._streamers: dict[tuple[int, int, int], Any] = {}
        self._decode = jax.jit(lambda v, c, m: codec.apply(v, c, m, method=_decode_masked))

    # ---- facts ----
    @property
    def num_quantizers(self) -> int:
        return self.codec.num_quantizers

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def joint(self) -> bool:
        """True for a joint-stereo model (one code stream for both channels)."""
        return codec_io.is_joint(self.codec)

    def streams(self, channels: int) -> int:
        """Code streams for audio of `channels` channels (1 for a joint-stereo model)."""
        return codec_io.code_streams(self.codec, channels)

    def kbps(self, n_quantizers: int) -> float:
        """Nominal bitrate of one code stream (bit-packed codes, no framing): per channel for
        a mono model, for the pair for a joint-stereo one."""
        return self.codec.bitrate_kbps(n_quantizers)

    def padded_length(self, num_samples: int) -> int:
        """The compiled input length a signal of `num_samples` runs at."""
        m = self.codec.length_multiple
        exact = max(1, -(-num_samples // m)) * m
        if not self.bucketed:
            return exact
        for b in self.buckets:
            if b >= exact:
                return b
        raise ValueError(
            f"{num_samples / self.sample_rate:.2f} s is longer than the demo's limit of "
            f"{self.max_seconds:g} s"
        )

    def _frames(self, num_samples: int) -> int:
        """Latent frames the compiled offline path runs for a signal of `num_samples`: its
        padded length's, plus the decoder's lookahead frames that `Codec.encode` adds
        (SpectroStream's), so the codes are `compress`'s to the last frame."""
        codec = self.codec
        return self.padded_length(num_samples) // codec.hop_length + codec.decoder_lookahead_frames

    # ---- offline path ----
    def encode(self, audio: np.ndarray) -> tuple[np.ndarray, ...]:
        """Audio ``[C, T]`` -> codes of every level ``[S, F / s_i]`` (int32; S = C streams,
        or 1 for a joint-stereo model), F the frames `compress` encodes. The first k levels
        are the codes of n_quantizers=k (residual VQ)."""
        codec = self.codec
        audio = np.asarray(audio, np.float32)
        channels, t = audio.shape
        codec_io.check_channels(codec, channels)
        frames = chunked.encoded_frames(codec, t)
        length = self._frames(t) * codec.hop_length
        # The jitted functions `iter_encode` runs, so the codes match `compress` exactly.
        enc = chunked._jit(codec, "encode")
        quant = chunked._jit(codec, "quantize", codec.num_quantizers)
        if self.joint:  # one row: the pair (mono duplicated)
            inputs = [match_channels(audio.T, 2)]
        else:  # a row per channel
            inputs = [a[:, None] for a in audio]
        rows = []
        with self.lock:
            for a in inputs:
                x = np.zeros((1, length, codec.channels), np.float32)
                x[0, :t] = a
                lat = enc(self.variables, jnp.asarray(x))
                rows.append(np.asarray(quant(self.variables, lat))[0, :frames])
        fc = np.stack(rows)  # [S, F, K] frame-rate codes
        return tuple(np.asarray(c, np.int32) for c in st.from_frame_codes(codec, fc))

    def decode(self, codes, num_samples: int, channels: int | None = None) -> np.ndarray:
        """Codes of the first k levels, ``[S, F / s_i]`` each -> audio ``[C, num_samples]``:
        a row per stream for a mono model; for a joint-stereo model left and right, or their
        mean for `channels` 1 (a mono input)."""
        codec = self.codec
        k = len(codes)
        if not 1 <= k <= codec.num_quantizers:
            raise ValueError(f"{k} levels of codes; the model has {codec.num_quantizers}")
        fc = np.asarray(st.to_frame_codes(codec, [np.asarray(c) for c in codes]))  # [S, F, k]
        frames = fc.shape[1]
        padded = np.zeros((1, self._frames(num_samples), codec.num_quantizers), np.int32)
        mask = jnp.asarray(np.arange(codec.num_quantizers) < k, jnp.float32)
        out = []
        with self.lock:
            for row in fc:
                padded[:] = 0
                padded[0, :frames, :k] = row
                y = self._decode(self.variables, jnp.asarray(padded), mask)
                y = np.asarray(y[0, :num_samples], np.float32)  # [T, model channels]
                out.append(match_channels(y, channels or 2).T if self.joint else y.T)
        return np.concatenate(out)

    # ---- streaming ----
    def streamers(self, streams: int, n_quantizers: int, chunk_frames: int):
        """A (StreamingEncoder, StreamingDecoder) pair for `streams` code streams, made once
        per setting (their jitted steps compile on first use)."""
        key = (streams, n_quantizers, chunk_frames)
        if key not in self._streamers:
            enc = st.StreamingEncoder(self.codec, self.params, chunk_frames, streams, n_quantizers)
            dec = st.StreamingDecoder(self.codec, self.params, chunk_frames, streams, enc.k)
            self._streamers[key] = (enc, dec)
        return self._streamers[key]

    def stream(
        self, audio: np.ndarray, n_quantizers: int, chunk_ms: float = DEFAULT_CHUNK_MS
    ) -> tuple[np.ndarray, list[float], int]:
        """`audio` ``[C, T]`` chunk by chunk through the streaming encoder and decoder, timed
        (`streaming.timed_stream`): (output ``[C, T]`` aligned with the input, seconds per
        chunk, chunk frames). Raises ValueError for a non-causal model."""
        if not self.codec.causal:
            raise ValueError("this model is non-causal (it looks ahead) and cannot stream")
        audio = np.asarray(audio, np.float32)
        channels, t = audio.shape
        codec_io.check_channels(self.codec, channels)
        n = st.chunk_frames_for(self.codec, chunk_ms)
        x = match_channels(audio.T, 2)[None] if self.joint else audio  # [1, T, 2] or [C, T]
        with self.lock:
            enc, dec = self.streamers(x.shape[0], n_quantizers, n)
            out, times = st.timed_stream(enc, dec, st.stream_chunks(self.codec, x, n, enc.delay))
        y = np.concatenate(out, axis=1)[:, :t]
        return codec_io.file_channels(y, channels), times, n

    # ---- startup ----
    def warmup(self, stream: bool = True) -> float:
        """Compiles the offline path at every bucket length, and the streaming steps for one
        channel with every level at the default chunk; returns the seconds it took."""
        t0 = time.perf_counter()
        k = self.num_quantizers
        for length in self.buckets:
            x = np.zeros((1, length), np.float32)
            codes = self.encode(x)
            self.decode(codes, length)
            log.info("compiled the %.1f s bucket", length / self.sample_rate)
        if stream and self.codec.causal:
            n = st.chunk_frames_for(self.codec, DEFAULT_CHUNK_MS)
            self.stream(np.zeros((1, n * self.codec.hop_length), np.float32), k)
        return time.perf_counter() - t0
