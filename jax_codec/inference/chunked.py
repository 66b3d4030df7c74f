"""Chunked offline encode/decode: constant memory for any model and any signal length.

A centred model looks ahead, so it cannot stream. `chunked_encode` / `chunked_decode` process
windows of ``window_frames`` frames with enough context on both sides for the receptive field
(computed from the architecture), keep only each window's core, and quantize aligned blocks, so
the output matches the whole-signal output while memory stays constant in the signal length.
`iter_encode` / `iter_decode` yield the windows' results one by one (what `compress` and
`decompress` write as they go); `window_plan` says how a signal is cut.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.inference.streaming import (
    _decode_frame_codes,
    _encode_latents,
    _quantize,
    api_audio,
    block_frames,
    bounded_receptive_field,
    decoder_receptive_field,
    encoder_receptive_field,
    from_frame_codes,
    inference_variables,
    model_audio,
    to_frame_codes,
)
from jax_codec.models.codec import Codec

DEFAULT_WINDOW_FRAMES = 1024  # ~12 s at the base frame rate
# Models with an LSTM (unbounded receptive field) are processed as one window of the whole
# signal, as their PyTorch originals do, up to this many seconds; longer signals, or an
# explicit `window_frames`, use windows with UNBOUNDED_CONTEXT_SECONDS of context on each side
# (close to, not bit-equal to, the whole-signal output; like EnCodec 48 kHz's own segments).
MAX_WHOLE_SIGNAL_SECONDS = 600.0
UNBOUNDED_CONTEXT_SECONDS = 5.0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _ceil_to(a: int, b: int) -> int:
    return _ceil_div(a, b) * b


def _windows(total: int, core: int, context: int) -> Iterator[tuple[int, int, int]]:
    """(core start, input start, input length) of windows over `total` frames; fixed length
    windows shifted inside the signal at its edges, so one compiled shape serves them all."""
    length = min(total, core + 2 * context)
    for a in range(0, total, core):
        start = min(max(0, a - context), total - length)
        yield a, start, length


def window_core_frames(
    codec: Codec, window_frames: int | None = None, total_frames: int | None = None
) -> int:
    """Frames each window of `iter_encode` / `iter_decode` contributes (a multiple of L).

    `total_frames` (the signal's encoded frames) matters only for models without a bounded
    receptive field: see `window_plan`.
    """
    L = block_frames(codec)
    if window_frames is None and not bounded_receptive_field(codec) and total_frames:
        whole = _ceil_to(max(int(total_frames), 1), L)
        if whole <= MAX_WHOLE_SIGNAL_SECONDS * codec.frame_rate:
            return whole
    return max(L, (window_frames or DEFAULT_WINDOW_FRAMES) // L * L)


def window_plan(
    codec: Codec, total_frames: int, window_frames: int | None = None, side: str = "encode"
) -> tuple[int, int, bool]:
    """(core frames, context frames, exact) of the windows over a signal of `total_frames`.

    `exact` says whether the windowed output equals the whole-signal output: always for
    convolutional models (the context covers the receptive field); for an LSTM model only when
    one window holds the whole signal (the default up to MAX_WHOLE_SIGNAL_SECONDS).
    """
    L = block_frames(codec)
    core = window_core_frames(codec, window_frames, total_frames)
    if side == "encode":
        context = _ceil_to(_ceil_div(encoder_receptive_field(codec), codec.hop_length), L)
    else:
        # a multiple of L, so windows start on the quantizer and attention grid
        context = _ceil_to(decoder_receptive_field(codec) + 1, L)
    exact = True
    if not bounded_receptive_field(codec):
        exact = core >= total_frames
        context = (
            0
            if exact
            else _ceil_to(
                max(context, int(math.ceil(UNBOUNDED_CONTEXT_SECONDS * codec.frame_rate))), L
            )
        )
    return core, context, exact


def encoded_frames(codec: Codec, num_samples: int) -> int:
    """Latent frames `Codec.encode` makes of `num_samples` samples (a multiple of L, plus the
    decoder's lookahead frames: SpectroStream's)."""
    m = codec.length_multiple
    return _ceil_to(num_samples, m) // codec.hop_length + codec.decoder_lookahead_frames


class _Buffer:
    """A sliding span ``[base, base + data.shape[1])`` of a ``[B, N, ...]`` sequence fed in
    pieces; memory is bounded by what the caller keeps (`drop_before`)."""

    def __init__(self, pieces: Iterator[np.ndarray], total: int, what: str):
        self.pieces, self.total, self.what = pieces, total, what
        self.data: np.ndarray | None = None
        self.base = 0
        self.fed = 0

    def _feed(self) -> bool:
        piece = next(self.pieces, None)
        if piece is None:
            return False
        piece = np.asarray(piece)
        if self.data is not None and piece.shape[0] != self.data.shape[0]:
            raise ValueError(f"{self.what}: batch {piece.shape[0]} != {self.data.shape[0]}")
        self.fed += piece.shape[1]
        if self.fed > self.total:
            raise ValueError(f"{self.what}: more than the {self.total} announced")
        self.data = piece if self.data is None else np.concatenate([self.data, piece], axis=1)
        return True

    def take(self, start: int, stop: int, pad_to: int | None = None) -> np.ndarray:
        """Items ``[start, stop)``; past `total` (up to `pad_to`) they are zeros."""
        end = min(stop, self.total)
        while self.base + (0 if self.data is None else self.data.shape[1]) < end:
            if not self._feed():
                raise ValueError(f"{self.what}: input ended after {self.fed} of {self.total}")
        if start < self.base:
            raise ValueError(f"{self.what}: {start} was already dropped")
        if self.data is None:  # total == 0
            raise ValueError(f"{self.what}: nothing to take")
        out = self.data[:, start - self.base : end - self.base]
        if stop > end:
            pad = [(0, 0)] * out.ndim
            pad[1] = (0, stop - end)
            out = np.pad(out, pad)
        return out

    def drop_before(self, pos: int) -> None:
        if self.data is not None and pos > self.base:
            cut = min(pos - self.base, self.data.shape[1])
            self.data = self.data[:, cut:]
            self.base += cut

    def finish(self) -> None:
        """Checks that the input held exactly `total` items."""
        while self._feed():
            pass
        if self.fed != self.total:
            raise ValueError(f"{self.what}: input ended after {self.fed} of {self.total}")


def iter_encode(
    codec: Codec,
    params,
    blocks: Iterator[np.ndarray] | Sequence[np.ndarray],
    num_samples: int,
    n_quantizers: int | None = None,
    window_frames: int | None = None,
) -> Iterator[tuple[np.ndarray, ...]]:
    """Windowed `Codec.encode` of a signal given as pieces: the constant-memory core of
    `chunked_encode`.

    `blocks` yields float32 audio ``[B, n]`` or ``[B, n, C]`` (channels matched to the codec's,
    see the module doc) of any sizes, `num_samples` in all. Yields, for
    each window of ``window_core_frames`` latent frames (the last one shorter), its codes per
    level ``[B, frames / s_i]`` as numpy int arrays; concatenated they are the codes of the
    whole (zero-padded) signal. Only about one window of audio is held at a time.
    """
    p = inference_variables(params)
    k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
    if not 1 <= k <= codec.num_quantizers:
        raise ValueError(f"n_quantizers={n_quantizers} must be in [1, {codec.num_quantizers}]")
    hop = codec.hop_length
    total = encoded_frames(codec, num_samples)
    core, context, _ = window_plan(codec, total, window_frames, "encode")
    blocks = (model_audio(codec, np.asarray(b, np.float32)) for b in blocks)
    buf = _Buffer(blocks, num_samples, "audio samples")
    enc = _jit(codec, "encode")
    quant = _jit(codec, "quantize", k)
    for a, start, length in _windows(total, core, context):
        x = buf.take(start * hop, (start + length) * hop)
        buf.drop_before(start * hop)
        lat = enc(p, jnp.asarray(x))
        n = min(core, total - a)
        fc = np.asarray(quant(p, lat[:, a - start : a - start + n]))
        yield tuple(np.asarray(c) for c in from_frame_codes(codec, fc))
    buf.finish()


def iter_decode(
    codec: Codec,
    params,
    frame_code_blocks: Iterator[np.ndarray] | Sequence[np.ndarray],
    num_frames: int,
    length: int | None = None,
    window_frames: int | None = None,
) -> Iterator[np.ndarray]:
    """Windowed `Codec.decode`: the constant-memory core of `chunked_decode`.

    `frame_code_blocks` yields frame-rate codes ``[B, F, k]`` (see `to_frame_codes`) of any
    sizes, `num_frames` frames in all. Yields audio ``[B, n * hop]`` (float32; ``[B, n * hop,
    C]`` for a stereo codec) window by window;
    concatenated they are the decoding of all the codes, cut to `length` samples if given.
    """
    p = inference_variables(params, codec)
    hop = codec.hop_length
    core, context, _ = window_plan(codec, num_frames, window_frames, "decode")
    buf = _Buffer((np.asarray(b, np.int32) for b in frame_code_blocks), num_frames, "code frames")
    dec = _jit(codec, "decode")
    left = num_frames * hop if length is None else int(length)
    for a, start, n_in in _windows(num_frames, core, context):
        fc = buf.take(start, start + n_in)
        buf.drop_before(start)
        if left <= 0:
            continue  # frames past `length`: read (and checked), not decoded
        y = dec(p, jnp.asarray(fc))
        n = min(core, num_frames - a)
        out = np.asarray(api_audio(codec, y[:, (a - start) * hop : (a - start + n) * hop]))
        out = out[:, :left]
        left -= out.shape[1]
        yield out
    buf.finish()


def chunked_encode(
    codec: Codec, params, audio: np.ndarray, n_quantizers: int | None = None, window_frames=None
) -> tuple[np.ndarray, ...]:
    """`Codec.encode` of `audio` ``[B, T]`` (or ``[B, T, C]``) in windows: per-level codes,
    constant memory."""
    audio = np.asarray(audio, np.float32)
    k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
    parts = list(iter_encode(codec, params, [audio], audio.shape[1], k, window_frames))
    b = audio.shape[0]
    if not parts:
        return tuple(np.zeros((b, 0), np.int32) for _ in range(k))
    return tuple(np.concatenate(level, axis=1) for level in zip(*parts))


def chunked_decode(
    codec: Codec, params, codes: Sequence[np.ndarray], length: int | None = None, window_frames=None
) -> np.ndarray:
    """`Codec.decode` in windows: codes -> audio ``[B, T]`` (``[B, T, C]`` for a stereo codec),
    constant memory."""
    fc = np.asarray(to_frame_codes(codec, codes))
    total = fc.shape[1]
    parts = list(iter_decode(codec, params, [fc], total, length, window_frames))
    if not parts:
        channels = () if codec.channels == 1 else (codec.channels,)
        return np.zeros((fc.shape[0], 0) + channels, np.float32)
    return np.concatenate(parts, axis=1)


_JIT_CACHE: dict = {}


def _jit(codec: Codec, what: str, k: int | None = None):
    key = (codec, what, k)
    if key not in _JIT_CACHE:
        if what == "encode":
            fn = lambda v, x: codec.apply(v, x, method=_encode_latents)
        elif what == "quantize":
            fn = lambda v, z: codec.apply(v, z, k, method=_quantize)
        else:
            fn = lambda v, c: codec.apply(v, c, method=_decode_frame_codes)
        _JIT_CACHE[key] = jax.jit(fn)
    return _JIT_CACHE[key]
