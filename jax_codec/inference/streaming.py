"""Real-time streaming encode/decode (causal models), and the architecture facts it shares with
the chunked offline path (`jax_codec.inference.chunked`).

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

Channels
--------
Audio is ``[B, T]`` for a mono codec and ``[B, T, C]`` for a joint-stereo one (`Codec.channels`),
in and out; an input with another channel count is converted by `jax_codec.stereo.match_channels`
(mono duplicated, stereo mixed down), and ``[B, T]`` counts as mono. A stereo stream carries one
code stream for both channels, with the mono shapes.

Chunked offline (non-causal presets, and long files)
----------------------------------------------------
A centred model looks ahead, so it cannot stream: `jax_codec.inference.chunked` processes
windows with enough context for the receptive field, in constant memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.models import spectrostream
from jax_codec.models.codec import Codec
from jax_codec.models.layers import fold_weight_norm, transposed_conv_paths
from jax_codec.stereo import match_channels

Array = jax.Array


# --------------------------------------------------------------------------- architecture facts


def block_frames(codec: Codec) -> int:
    """L: frames per self-contained block (lcm of the level strides and, for SNAC, of the
    attention window), so that windows starting at multiples of L align pooling and attention."""
    return codec.block_frames


def stream_delay_frames(codec: Codec, chunk_frames: int) -> int:
    """D: frames by which encoder outputs lag their inputs, a multiple of the chunk (the wait for
    a block to complete, plus the encoder's lookahead: SpectroStream's, a frame)."""
    L, n = block_frames(codec), chunk_frames
    need = L - math.gcd(n, L) + codec.encoder_lookahead_frames
    return -(-need // n) * n


def decoder_delay_frames(codec: Codec, chunk_frames: int) -> int:
    """Frames by which the streaming decoder's aligned output lags its codes: the decoder's
    lookahead (SpectroStream's, a frame) rounded up to whole chunks; 0 for the others."""
    d, n = codec.decoder_lookahead_frames, chunk_frames
    return -(-d // n) * n


def algorithmic_latency(codec: Codec) -> int:
    """Samples between an input sample and the earliest time its decoded output can exist."""
    if not codec.causal:
        raise ValueError("a non-causal model has no streaming latency (it looks ahead)")
    lookahead = codec.encoder_lookahead_frames + codec.decoder_lookahead_frames
    return (block_frames(codec) + lookahead) * codec.hop_length


def stream_latency(codec: Codec, chunk_frames: int) -> int:
    """Samples from an input sample's arrival to its output, with chunk buffering."""
    delay = stream_delay_frames(codec, chunk_frames) + decoder_delay_frames(codec, chunk_frames)
    return (delay + chunk_frames) * codec.hop_length


def bounded_receptive_field(codec: Codec) -> bool:
    """False for models whose outputs depend on the whole past (an LSTM: EnCodec's SEANet).

    Their windowed (`iter_encode` / `iter_decode`) output equals the whole-signal output only
    when the window is the whole signal; see `window_plan`.
    """
    return not getattr(codec, "lstm_layers", 0)


def encoder_receptive_field(codec: Codec) -> int:
    """Input samples an encoder frame depends on, minus one (its total context span), for the
    convolutions (an LSTM's unbounded memory is not counted; see `bounded_receptive_field`)."""
    if codec.arch == "spectrostream":
        return spectrostream.encoder_context(
            codec.ratios2d, codec.base_conv_size, codec.stft_frame_length, codec.stft_frame_step
        )
    seanet = codec.arch == "seanet"
    span, rate = 6, 1  # conv k=7
    for s in codec.encoder_strides:
        # residual units: DAC's Snake units k=7, SEANet's blocks k=3 (then k=1)
        span += sum((2 if seanet else 6) * d for d in codec.dilations) * rate
        span += (2 * s - 1) * rate  # strided conv, k=2s
        rate *= s
    if codec.arch == "snac":
        # final conv k=7, and local attention over windows of `attn_window` frames
        return span + 6 * rate + codec.attn_window * rate
    return span + (6 if seanet else 2) * rate  # final conv: k=7 (SEANet) or k=3 (DAC)


def decoder_receptive_field(codec: Codec) -> int:
    """Output samples' context span in decoder input frames, rounded up (convolutions only)."""
    if codec.arch == "spectrostream":
        return spectrostream.decoder_context(
            codec.ratios2d, codec.base_conv_size, codec.decoder_lookahead_frames
        )
    seanet = codec.arch == "seanet"
    hop = codec.hop_length
    span, step = 6 * hop, hop  # conv k=7 at the frame rate; span in output samples
    for s in codec.decoder_strides:
        span += step  # transposed conv k=2s: one more input step
        step //= s
        span += sum((2 if seanet else 6) * d for d in codec.dilations) * step
    span += 6 * step  # final conv k=7
    attention = codec.attn_window if codec.arch == "snac" else 0  # frames, after the first conv
    return -(-span // hop) + attention


def chunk_frames_for(codec: Codec, chunk_ms: float) -> int:
    """The number of frames (>= 1) closest to `chunk_ms` milliseconds."""
    frames = chunk_ms / 1000.0 * codec.sample_rate / codec.hop_length
    return max(1, int(round(frames)))


# --------------------------------------------------------------------------- model pieces


def _encode_latents(module: Codec, audio: Array) -> Array:
    return module.encoder(module.to_model_channels(audio))


def _quantize(module: Codec, z: Array, n_quantizers: int) -> Array:
    """Latents ``[B, W, D]`` (W a multiple of L) -> frame-rate codes ``[B, W, k]``."""
    return to_frame_codes(module, module.quantizer.encode(z, n_quantizers))


def _decode_frame_codes(module: Codec, codes: Array) -> Array:
    """Frame-rate codes ``[B, F, k]`` -> audio ``[B, F * hop, C]`` (decoder caches in stream)."""
    z = None
    for i in range(codes.shape[-1]):
        q = module.quantizer.decode_level(i, codes[..., i])
        z = q if z is None else z + q
    return module.from_model_channels(module.decoder(z))


def model_audio(codec: Codec, audio) -> np.ndarray | Array:
    """API audio ``[B, T]`` (mono) or ``[B, T, C]`` -> the codec's ``[B, T, codec.channels]``
    (`jax_codec.stereo.match_channels`: mono duplicated, stereo mixed down)."""
    if audio.ndim == 2:
        audio = audio[..., None]
    return match_channels(audio, codec.channels)


def api_audio(codec: Codec, audio):
    """The codec's ``[B, T, C]`` output -> ``[B, T]`` for a mono codec, else unchanged."""
    return audio[..., 0] if codec.channels == 1 else audio


def to_frame_codes(codec: Codec, codes: Sequence[Array]) -> Array:
    """Per-level codes ``[B, F / s_i]`` -> frame-rate codes ``[B, F, k]``."""
    reps = [jnp.repeat(jnp.asarray(c), s, axis=1) for c, s in zip(codes, codec.vq_strides)]
    return jnp.stack(reps, axis=-1)


def from_frame_codes(codec: Codec, frame_codes: Array) -> tuple[Array, ...]:
    """Frame-rate codes ``[B, F, k]`` -> per-level codes ``[B, F / s_i]`` (F a multiple of L)."""
    k = frame_codes.shape[-1]
    return tuple(frame_codes[:, :: codec.vq_strides[i], i] for i in range(k))


def _cache_zeros(codec: Codec, variables, fn, example: Array):
    """Zeros shaped like the ``cache`` collection `fn` creates (no compute: eval_shape)."""
    shapes = jax.eval_shape(
        lambda v, x: codec.apply(v, x, method=fn, mutable=["cache"])[1]["cache"],
        variables,
        example,
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def _params(params):
    return params["params"] if "params" in params else params


_fold = jax.jit(fold_weight_norm, static_argnums=1)


def inference_variables(params, codec: Codec | None = None) -> dict:
    """``{"params", "folded"}``: the weights with every weight-normed kernel precomputed once
    (`fold_weight_norm`), so a step per chunk does not redo the normalisation. Given the
    `codec`, its decoder's transposed convolutions get their kernels in the layout their
    matmul reads (`transposed_conv_paths`), so a step does not transpose them either."""
    p = _params(params)
    transposed = frozenset()
    if codec is not None:
        codes = jnp.zeros((1, block_frames(codec), codec.num_quantizers), jnp.int32)
        apply = functools.partial(codec.apply, method=_decode_frame_codes)
        transposed = transposed_conv_paths(apply, {"params": p}, codes)
    return {"params": p, "folded": _fold(p, transposed)}


# --------------------------------------------------------------------------- streaming


class StreamingEncoder:
    """Chunk-by-chunk encoder of ``batch`` streams: ``push(audio [B, n * hop])`` (``[B, n * hop,
    C]`` for a stereo codec) -> codes.

    `step` is the pure jitted function ``(variables, state, chunk [B, n*hop, C]) -> (codes
    [B, n, k], state)``, for callers that manage state themselves (`variables` is
    `inference_variables(params)`, kept as ``.variables``); `init_state()` gives a fresh state.
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
        self.variables = inference_variables(params)
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
        example = jnp.zeros((self.batch, self.chunk_samples, self.codec.channels), jnp.float32)
        return {
            "cache": _cache_zeros(self.codec, self.variables, _encode_latents, example),
            "latents": jnp.zeros((self.batch, self.R, self.codec.latent_channels), jnp.float32),
            "t": jnp.zeros((), jnp.int32),
        }

    def reset(self) -> None:
        self.state = self.init_state()
        self.pushed = 0  # chunks pushed

    def _step(self, variables, state, chunk):
        codec, n, L, D, R, W = self.codec, self.n, self.L, self.delay, self.R, self.W
        lat, upd = codec.apply(
            {**variables, "cache": state["cache"]},
            chunk,
            method=_encode_latents,
            mutable=["cache"],
        )
        lat = lat.astype(jnp.float32)
        t = state["t"]
        e = codec.encoder_lookahead_frames  # the encoder's latents lag its input by e frames
        buf = jnp.concatenate([state["latents"], lat], axis=1)  # frames [t - e - R, t - e + n)
        ext = jnp.concatenate([buf, jnp.zeros((buf.shape[0], W, buf.shape[2]), buf.dtype)], 1)
        start = jnp.floor_divide(t - D, L) * L  # first whole block holding frame t - D
        window = jax.lax.dynamic_slice_in_dim(ext, R + start - (t - e), W, axis=1)
        codes = codec.apply(variables, window, self.k, method=_quantize)
        out = jax.lax.dynamic_slice_in_dim(codes, t - D - start, n, axis=1)
        new = {"cache": upd["cache"], "latents": buf[:, n:], "t": t + n}
        return out, new

    def push(self, chunk) -> Array | None:
        """Encode `chunk` ``[B, n * hop]`` or ``[B, n * hop, C]`` (channels matched to the
        codec's, see the module doc); None while filling the delay."""
        chunk = jnp.asarray(chunk, jnp.float32)
        if chunk.ndim not in (2, 3) or chunk.shape[:2] != (self.batch, self.chunk_samples):
            c = self.codec.channels
            raise ValueError(
                f"chunk shape {chunk.shape}: expected ({self.batch}, {self.chunk_samples})"
                + (f" or ({self.batch}, {self.chunk_samples}, {c})" if c > 1 else "")
                + f" ({self.n} frames of {self.codec.hop_length} samples)"
            )
        chunk = model_audio(self.codec, chunk)
        codes, self.state = self.step(self.variables, self.state, chunk)
        self.pushed += 1
        return None if self.pushed <= self.delay // self.n else codes


class StreamingDecoder:
    """Chunk-by-chunk decoder: ``push(codes [B, n, k])`` -> audio ``[B, n * hop]`` (``[B, n *
    hop, C]`` for a stereo codec).

    A decoder that looks ahead (SpectroStream: `Codec.decoder_lookahead_frames`) emits its audio
    that many frames late; the output is re-aligned to whole chunks of the offline signal, so
    that ``delay`` frames (`decoder_delay_frames`) pass before the first chunk: `push` returns
    None for the first ``delay / n`` codes. The audio between the two alignments is the
    ``carry`` of the state.
    """

    def __init__(self, codec: Codec, params, chunk_frames: int, batch: int = 1, n_quantizers=None):
        if not codec.causal:
            raise ValueError("this codec is non-causal and cannot stream; use chunked_decode")
        self.codec = codec
        self.variables = inference_variables(params, codec)
        self.n = chunk_frames
        self.batch = batch
        self.k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
        self.delay = decoder_delay_frames(codec, chunk_frames)
        self.carry = (self.delay - codec.decoder_lookahead_frames) * codec.hop_length
        self.step = jax.jit(self._step, donate_argnums=1)
        self.reset()

    def init_state(self):
        example = jnp.zeros((self.batch, self.n, self.k), jnp.int32)
        cache = _cache_zeros(self.codec, self.variables, _decode_frame_codes, example)
        if not self.carry:
            return cache
        shape = (self.batch, self.carry, self.codec.channels)
        return {"cache": cache, "carry": jnp.zeros(shape, jnp.float32)}

    def reset(self) -> None:
        self.state = self.init_state()
        self.pushed = 0

    def _step(self, variables, state, codes):
        cache = state["cache"] if self.carry else state
        audio, upd = self.codec.apply(
            {**variables, "cache": cache}, codes, method=_decode_frame_codes, mutable=["cache"]
        )
        audio = audio.astype(jnp.float32)
        if not self.carry:
            return api_audio(self.codec, audio), upd["cache"]
        both = jnp.concatenate([state["carry"], audio], axis=1)
        n = audio.shape[1]
        return api_audio(self.codec, both[:, :n]), {"cache": upd["cache"], "carry": both[:, n:]}

    def push(self, codes) -> Array | None:
        codes = jnp.asarray(codes, jnp.int32)
        if codes.shape != (self.batch, self.n, self.k):
            raise ValueError(f"codes shape {codes.shape}: expected {(self.batch, self.n, self.k)}")
        audio, self.state = self.step(self.variables, self.state, codes)
        self.pushed += 1
        return None if self.pushed <= self.delay // self.n else audio


def stream_chunks(
    codec: Codec, audio: np.ndarray, chunk_frames: int, delay_frames: int
) -> Iterator[np.ndarray]:
    """Chunks ``[B, n * hop, ...]`` of `audio` ``[B, T, ...]``, zero-padded so that every frame
    of the offline path (T rounded up to the codec's length multiple) leaves the encoder
    (`delay_frames`: the encoder's delay) and the decoder (its own delay, added here)."""
    b, t = audio.shape[:2]
    m = codec.length_multiple
    frames = -(-t // m) * m // codec.hop_length
    delay_frames += decoder_delay_frames(codec, chunk_frames)
    chunks = -(-(frames + delay_frames) // chunk_frames)
    total = chunks * chunk_frames * codec.hop_length
    padded = np.zeros((b, total) + audio.shape[2:], np.float32)
    padded[:, :t] = audio
    step = chunk_frames * codec.hop_length
    for i in range(chunks):
        yield padded[:, i * step : (i + 1) * step]


def stream_roundtrip(
    codec: Codec, params, audio: np.ndarray, chunk_frames: int, n_quantizers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode `audio` ``[B, T]`` (or ``[B, T, C]``) chunk by chunk: (decoded
    ``[B, T]``, or ``[B, T, C]`` for a stereo codec; frame codes).

    The output is aligned with the input (the stream delay removed) and cut to ``T``.
    """
    audio = api_audio(codec, model_audio(codec, np.asarray(audio, np.float32)))
    enc = StreamingEncoder(codec, params, chunk_frames, audio.shape[0], n_quantizers)
    dec = StreamingDecoder(codec, params, chunk_frames, audio.shape[0], enc.k)
    outs, codes = [], []
    for chunk in stream_chunks(codec, audio, chunk_frames, enc.delay):
        c = enc.push(chunk)
        if c is not None:
            codes.append(np.asarray(c))
            y = dec.push(c)
            if y is not None:
                outs.append(np.asarray(y))
    t = audio.shape[1]
    return np.concatenate(outs, axis=1)[:, :t], np.concatenate(codes, axis=1)


def timed_stream(
    enc: StreamingEncoder, dec: StreamingDecoder, chunks
) -> tuple[list[np.ndarray], list[float]]:
    """Run `chunks` through `enc` then `dec` as a real-time pipeline: (decoded chunks, seconds
    each chunk took from arrival to decoded audio, waiting for the result). Both steps are
    compiled first, on scratch state, so the times are steady-state; the streams start fresh.
    """
    import time

    x = np.zeros((enc.batch, enc.chunk_samples, enc.codec.channels), np.float32)
    # Two steps each: the first takes a fresh state, later ones the state a step returned,
    # which is committed to the weights' device when they are (weights from a checkpoint), a
    # second compiled variant that would otherwise compile inside the timed loop.
    warm, state = enc.step(enc.variables, enc.init_state(), x)
    enc.step(enc.variables, state, x)
    _, state = dec.step(dec.variables, dec.init_state(), warm)
    jax.block_until_ready(dec.step(dec.variables, state, warm))
    enc.reset()
    dec.reset()
    outs, times = [], []
    for chunk in chunks:
        t0 = time.perf_counter()
        codes = enc.push(chunk)
        y = None if codes is None else jax.block_until_ready(dec.push(codes))
        times.append(time.perf_counter() - t0)
        if y is not None:
            outs.append(np.asarray(y))
    return outs, times
