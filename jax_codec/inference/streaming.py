"""Real-time streaming encode/decode (causal models) and chunked offline processing (any model).

Streaming (causal presets)
--------------------------
`StreamingEncoder` and `StreamingDecoder` run one jitted step per chunk of ``n`` frames
(``n * hop`` samples, any ``n >= 1``), for a batch of independent streams, with explicit state:

- the convolution caches (each causal conv keeps its left context, each transposed conv its
  overlap-add tail; see `jax_codec.models.layers.streaming`): the pytree of the ``cache``
  collection;
- for the encoder, the last ``R`` latent frames and the frame counter ``t``: the hierarchical
  quantizer pools blocks of ``L = lcm(vq_strides)`` frames, so a frame's codes exist only once
  its block is complete.

Codes leave the encoder at the *frame rate*, ``[B, n, K]`` int32 (a coarse level's code repeated
over the frames of its block), delayed by ``delay_frames = D``: D is the smallest multiple of
``n`` that is at least ``L - gcd(n, L)``, the worst-case wait for a block to complete. The first
``D / n`` encoder outputs are therefore placeholders that `StreamingEncoder.push` drops (returns
None). Every step has fixed shapes, so nothing recompiles after the first chunk of a size.

The output equals the offline `Codec.encode` / `Codec.decode` of the whole (zero-padded) signal:
the same convolutions over the same samples, and the quantizer on the same aligned blocks.

Latency
-------
Algorithmic latency (`algorithmic_latency`): an output sample needs its frame's ``hop`` input
samples and the rest of its quantizer block: ``L * hop`` samples (46.4 ms for the base config);
causal transposed convolutions add no lookahead. A stream with chunks of ``n`` frames emits each
sample ``(D + n) * hop`` samples after it arrived (buffering included), which equals ``L * hop``
when ``n`` divides ``L`` or is a multiple of it.

Chunked offline (non-causal presets, and long files)
----------------------------------------------------
A centred model looks ahead, so it cannot stream. `chunked_encode` / `chunked_decode` process
windows of ``window_frames`` frames with enough context on both sides for the receptive field
(computed from the architecture), keep only each window's core, and quantize aligned blocks, so
the output matches the whole-signal output while memory stays constant in the signal length.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.models.codec import Codec

Array = jax.Array


# --------------------------------------------------------------------------- architecture facts


def block_frames(codec: Codec) -> int:
    """L: frames per quantizer block (lcm of the level strides)."""
    return math.lcm(*codec.vq_strides)


def stream_delay_frames(codec: Codec, chunk_frames: int) -> int:
    """D: frames by which encoder outputs lag their inputs, a multiple of the chunk."""
    L, n = block_frames(codec), chunk_frames
    need = L - math.gcd(n, L)
    return -(-need // n) * n


def algorithmic_latency(codec: Codec) -> int:
    """Samples between an input sample and the earliest time its decoded output can exist."""
    if not codec.causal:
        raise ValueError("a non-causal model has no streaming latency (it looks ahead)")
    return block_frames(codec) * codec.hop_length


def stream_latency(codec: Codec, chunk_frames: int) -> int:
    """Samples from an input sample's arrival to its output, with chunk buffering."""
    return (stream_delay_frames(codec, chunk_frames) + chunk_frames) * codec.hop_length


def encoder_receptive_field(codec: Codec) -> int:
    """Input samples an encoder frame depends on, minus one (its total context span)."""
    span, rate = 6, 1  # conv k=7
    for s in codec.encoder_strides:
        span += sum(6 * d for d in codec.dilations) * rate  # residual units, k=7
        span += (2 * s - 1) * rate  # strided conv, k=2s
        rate *= s
    return span + 2 * rate  # final conv k=3


def decoder_receptive_field(codec: Codec) -> int:
    """Output samples' context span in decoder input frames, rounded up."""
    hop = codec.hop_length
    span, step = 6 * hop, hop  # conv k=7 at the frame rate; span in output samples
    for s in codec.decoder_strides:
        span += step  # transposed conv k=2s: one more input step
        step //= s
        span += sum(6 * d for d in codec.dilations) * step
    span += 6 * step  # final conv k=7
    return -(-span // hop)


def chunk_frames_for(codec: Codec, chunk_ms: float) -> int:
    """The number of frames (>= 1) closest to `chunk_ms` milliseconds."""
    frames = chunk_ms / 1000.0 * codec.sample_rate / codec.hop_length
    return max(1, int(round(frames)))


# --------------------------------------------------------------------------- model pieces


def _encode_latents(module: Codec, audio: Array) -> Array:
    return module.encoder(audio)


def _quantize(module: Codec, z: Array, n_quantizers: int) -> Array:
    """Latents ``[B, W, D]`` (W a multiple of L) -> frame-rate codes ``[B, W, k]``."""
    return to_frame_codes(module, module.quantizer.encode(z, n_quantizers))


def _decode_frame_codes(module: Codec, codes: Array) -> Array:
    """Frame-rate codes ``[B, F, k]`` -> audio ``[B, F * hop, 1]`` (decoder caches in stream)."""
    z = None
    for i in range(codes.shape[-1]):
        q = module.quantizer.levels[i].decode_codes(codes[..., i])
        z = q if z is None else z + q
    return module.decoder(z)


def to_frame_codes(codec: Codec, codes: Sequence[Array]) -> Array:
    """Per-level codes ``[B, F / s_i]`` -> frame-rate codes ``[B, F, k]``."""
    reps = [jnp.repeat(jnp.asarray(c), s, axis=1) for c, s in zip(codes, codec.vq_strides)]
    return jnp.stack(reps, axis=-1)


def from_frame_codes(codec: Codec, frame_codes: Array) -> tuple[Array, ...]:
    """Frame-rate codes ``[B, F, k]`` -> per-level codes ``[B, F / s_i]`` (F a multiple of L)."""
    k = frame_codes.shape[-1]
    return tuple(frame_codes[:, :: codec.vq_strides[i], i] for i in range(k))


def _cache_zeros(codec: Codec, params, fn, example: Array):
    """Zeros shaped like the ``cache`` collection `fn` creates (no compute: eval_shape)."""
    shapes = jax.eval_shape(
        lambda p, x: codec.apply({"params": p}, x, method=fn, mutable=["cache"])[1]["cache"],
        params,
        example,
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _params(params):
    return params["params"] if "params" in params else params


# --------------------------------------------------------------------------- streaming


class StreamingEncoder:
    """Chunk-by-chunk encoder of ``batch`` streams: ``push(audio [B, n * hop])`` -> codes.

    `step` is the pure jitted function ``(params, state, chunk [B, n*hop, 1]) -> (codes [B, n, k],
    state)``, for callers that manage state themselves; `init_state()` gives a fresh state.
    """

    def __init__(
        self,
        codec: Codec,
        params,
        chunk_frames: int,
        batch: int = 1,
        n_quantizers: int | None = None,
    ):
        if not codec.causal:
            raise ValueError(
                "this codec is non-causal (centred padding) and cannot stream; "
                "use chunked_encode / chunked_decode for constant-memory offline processing"
            )
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.codec = codec
        self.params = _params(params)
        self.n = chunk_frames
        self.batch = batch
        self.k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
        if not 1 <= self.k <= codec.num_quantizers:
            raise ValueError(f"n_quantizers={n_quantizers} must be in [1, {codec.num_quantizers}]")
        self.L = block_frames(codec)
        self.delay = stream_delay_frames(codec, chunk_frames)
        self.R = self.delay + self.L
        self.W = -(-(self.n + self.L - 1) // self.L) * self.L
        self.chunk_samples = self.n * codec.hop_length
        self.step = jax.jit(self._step, donate_argnums=1)
        self.reset()

    def init_state(self) -> dict:
        example = jnp.zeros((self.batch, self.chunk_samples, 1), jnp.float32)
        return {
            "cache": _cache_zeros(self.codec, self.params, _encode_latents, example),
            "latents": jnp.zeros((self.batch, self.R, self.codec.latent_dim), jnp.float32),
            "t": jnp.zeros((), jnp.int32),
        }

    def reset(self) -> None:
        self.state = self.init_state()
        self.pushed = 0  # chunks pushed

    def _step(self, params, state, chunk):
        codec, n, L, D, R, W = self.codec, self.n, self.L, self.delay, self.R, self.W
        lat, upd = codec.apply(
            {"params": params, "cache": state["cache"]},
            chunk,
            method=_encode_latents,
            mutable=["cache"],
        )
        lat = lat.astype(jnp.float32)
        t = state["t"]
        buf = jnp.concatenate([state["latents"], lat], axis=1)  # frames [t - R, t + n)
        ext = jnp.concatenate([buf, jnp.zeros((buf.shape[0], W, buf.shape[2]), buf.dtype)], 1)
        start = jnp.floor_divide(t - D, L) * L  # first whole block holding frame t - D
        window = jax.lax.dynamic_slice_in_dim(ext, R + start - t, W, axis=1)
        codes = codec.apply({"params": params}, window, self.k, method=_quantize)
        out = jax.lax.dynamic_slice_in_dim(codes, t - D - start, n, axis=1)
        new = {"cache": upd["cache"], "latents": buf[:, n:], "t": t + n}
        return out, new

    def push(self, chunk) -> Array | None:
        """Encode `chunk` ``[B, n * hop]`` (or ``[B, n * hop, 1]``); None while filling the delay."""
        chunk = jnp.asarray(chunk, jnp.float32)
        if chunk.ndim == 2:
            chunk = chunk[..., None]
        if chunk.shape != (self.batch, self.chunk_samples, 1):
            raise ValueError(
                f"chunk shape {chunk.shape}: expected ({self.batch}, {self.chunk_samples}) "
                f"({self.n} frames of {self.codec.hop_length} samples)"
            )
        codes, self.state = self.step(self.params, self.state, chunk)
        self.pushed += 1
        return None if self.pushed <= self.delay // self.n else codes


class StreamingDecoder:
    """Chunk-by-chunk decoder: ``push(codes [B, n, k])`` -> audio ``[B, n * hop]``."""

    def __init__(self, codec: Codec, params, chunk_frames: int, batch: int = 1, n_quantizers=None):
        if not codec.causal:
            raise ValueError("this codec is non-causal and cannot stream; use chunked_decode")
        self.codec = codec
        self.params = _params(params)
        self.n = chunk_frames
        self.batch = batch
        self.k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
        self.step = jax.jit(self._step, donate_argnums=1)
        self.reset()

    def init_state(self):
        example = jnp.zeros((self.batch, self.n, self.k), jnp.int32)
        return _cache_zeros(self.codec, self.params, _decode_frame_codes, example)

    def reset(self) -> None:
        self.state = self.init_state()

    def _step(self, params, state, codes):
        audio, upd = self.codec.apply(
            {"params": params, "cache": state}, codes, method=_decode_frame_codes, mutable=["cache"]
        )
        return audio[..., 0].astype(jnp.float32), upd["cache"]

    def push(self, codes) -> Array:
        codes = jnp.asarray(codes, jnp.int32)
        if codes.shape != (self.batch, self.n, self.k):
            raise ValueError(f"codes shape {codes.shape}: expected {(self.batch, self.n, self.k)}")
        audio, self.state = self.step(self.params, self.state, codes)
        return audio


def stream_chunks(
    codec: Codec, audio: np.ndarray, chunk_frames: int, delay_frames: int
) -> Iterator[np.ndarray]:
    """Chunks ``[B, n * hop]`` of `audio` ``[B, T]``, zero-padded so that every frame of the
    offline path (T rounded up to the codec's length multiple) leaves the encoder."""
    b, t = audio.shape
    m = codec.length_multiple
    frames = -(-t // m) * m // codec.hop_length
    chunks = -(-(frames + delay_frames) // chunk_frames)
    total = chunks * chunk_frames * codec.hop_length
    padded = np.zeros((b, total), np.float32)
    padded[:, :t] = audio
    step = chunk_frames * codec.hop_length
    for i in range(chunks):
        yield padded[:, i * step : (i + 1) * step]


def stream_roundtrip(
    codec: Codec, params, audio: np.ndarray, chunk_frames: int, n_quantizers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode `audio` ``[B, T]`` chunk by chunk: (decoded ``[B, T]``, frame codes).

    The output is aligned with the input (the stream delay removed) and cut to ``T``.
    """
    audio = np.asarray(audio, np.float32)
    enc = StreamingEncoder(codec, params, chunk_frames, audio.shape[0], n_quantizers)
    dec = StreamingDecoder(codec, params, chunk_frames, audio.shape[0], enc.k)
    outs, codes = [], []
    for chunk in stream_chunks(codec, audio, chunk_frames, enc.delay):
        c = enc.push(chunk)
        if c is not None:
            codes.append(np.asarray(c))
            outs.append(np.asarray(dec.push(c)))
    t = audio.shape[1]
    return np.concatenate(outs, axis=1)[:, :t], np.concatenate(codes, axis=1)


# --------------------------------------------------------------------------- chunked offline


DEFAULT_WINDOW_FRAMES = 1024  # ~12 s at the base frame rate


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


def chunked_encode(
    codec: Codec, params, audio: np.ndarray, n_quantizers: int | None = None, window_frames=None
) -> tuple[np.ndarray, ...]:
    """`Codec.encode` of `audio` ``[B, T]`` in windows: per-level codes, constant memory."""
    p = _params(params)
    k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
    hop, L = codec.hop_length, block_frames(codec)
    audio = np.asarray(audio, np.float32)
    b, t = audio.shape
    m = codec.length_multiple
    total = -(-t // m) * m // hop
    padded = np.zeros((b, total * hop), np.float32)
    padded[:, :t] = audio
    core = max(L, (window_frames or DEFAULT_WINDOW_FRAMES) // L * L)
    context = _ceil_to(_ceil_div(encoder_receptive_field(codec), hop), L)  # frames
    enc = _jit(codec, "encode")
    quant = _jit(codec, "quantize", k)
    frame_codes = []
    for a, start, length in _windows(total, core, context):
        lat = enc(p, jnp.asarray(padded[:, start * hop : (start + length) * hop, None]))
        n = min(core, total - a)
        frame_codes.append(np.asarray(quant(p, lat[:, a - start : a - start + n])))
    fc = np.concatenate(frame_codes, axis=1)
    return tuple(np.asarray(c) for c in from_frame_codes(codec, fc))


def chunked_decode(
    codec: Codec, params, codes: Sequence[np.ndarray], length: int | None = None, window_frames=None
) -> np.ndarray:
    """`Codec.decode` in windows: codes -> audio ``[B, T]``, constant memory."""
    p = _params(params)
    hop, L = codec.hop_length, block_frames(codec)
    fc = np.asarray(to_frame_codes(codec, codes))
    total = fc.shape[1]
    core = max(L, (window_frames or DEFAULT_WINDOW_FRAMES) // L * L)
    context = decoder_receptive_field(codec) + 1
    dec = _jit(codec, "decode")
    out = []
    for a, start, n_in in _windows(total, core, context):
        y = dec(p, jnp.asarray(fc[:, start : start + n_in]))
        n = min(core, total - a)
        out.append(np.asarray(y[:, (a - start) * hop : (a - start + n) * hop, 0]))
    y = np.concatenate(out, axis=1)
    return y if length is None else y[:, :length]


_JIT_CACHE: dict = {}


def _jit(codec: Codec, what: str, k: int | None = None):
    key = (codec, what, k)
    if key not in _JIT_CACHE:
        if what == "encode":
            fn = lambda p, x: codec.apply({"params": p}, x, method=_encode_latents)
        elif what == "quantize":
            fn = lambda p, z: codec.apply({"params": p}, z, k, method=_quantize)
        else:
            fn = lambda p, c: codec.apply({"params": p}, c, method=_decode_frame_codes)
        _JIT_CACHE[key] = jax.jit(fn)
    return _JIT_CACHE[key]
