"""Many signals of different lengths and rates through a few compiled batch shapes.

  codes = encode_batch(loaded, [a, b, c], sample_rate=[44100, 48000, 22050])
  audio = decode_batch(loaded, codes, lengths=[len(x) for x in resampled])

Each signal is brought to the model's rate and channels, padded with zeros to a length bucket
(a power of two of the model's blocks), and batched with the others of its bucket; its codes
are cut back to its own blocks, and its decoded audio to its length. What a signal gets
equals coding it alone, because a causal model never sees what follows a frame: the padding
changes nothing before the signal's end.

A centred (non-causal) model does look ahead: past a signal's end each layer of a lone signal
sees zero padding, where in a longer batch row it would see the previous layer's response to
the padding (biases, activations). So such models batch only signals of the same number of
blocks (equal shapes). Models whose convolutions pad by reflection (EnCodec) batch only
signals of equal length.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.inference.api import LoadedCodec

DEFAULT_MAX_BATCH = 16


def bucket_blocks(blocks: int) -> int:
    """The bucket of a signal of `blocks` blocks: the next power of two."""
    return 1 << max(0, int(blocks) - 1).bit_length()


def _model_signal(loaded: LoadedCodec, x, rate: int | None) -> np.ndarray:
    """`x` ``[T]`` or ``[T, C]`` at `rate` -> float32 ``[T', channels]`` at the model's rate."""
    from jax_codec.stereo import match_channels

    codec = loaded.codec
    a = np.asarray(x, np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"a signal must be [samples] or [samples, channels], got {a.shape}")
    if rate is not None and int(rate) != codec.sample_rate:
        import soxr

        a = soxr.resample(a, int(rate), codec.sample_rate, quality="VHQ").astype(np.float32)
    return np.ascontiguousarray(match_channels(a[None], codec.channels)[0])


def _groups(keys: Sequence[int], max_batch: int) -> list[list[int]]:
    """Indices grouped by key (sorted), each group split into batches of at most max_batch."""
    out = []
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        out += [idx[j : j + max_batch] for j in range(0, len(idx), max_batch)]
    return out


def _grouping(loaded: LoadedCodec) -> str:
    """How signals may share a batch: "bucket" (causal, zero-padded: any lengths), "blocks"
    (centred: equal block counts) or "samples" (reflect-padded: equal lengths)."""
    codec = loaded.codec
    if codec.pad_mode == "reflect":
        return "samples"
    return "bucket" if codec.causal else "blocks"


@functools.lru_cache(maxsize=32)
def _encode_fn(codec, n_quantizers: int | None):
    """The jitted batch encoder of `codec` (one per model and K: compiled shapes are reused
    across calls)."""
    return jax.jit(lambda p, x: codec.apply(p, x, n_quantizers, method=codec.encode))


@functools.lru_cache(maxsize=32)
def _decode_fn(codec):
    """The jitted batch decoder of `codec`: frames past each row's mask are zero latents."""

    def fn(m, codes, mask):
        z = m.quantizer.decode(codes) * mask[..., None].astype(jnp.float32)
        return m.from_model_channels(m.decoder(z))

    return jax.jit(lambda p, codes, mask: codec.apply(p, codes, mask, method=fn))


def encode_batch(
    loaded: LoadedCodec,
    signals: Sequence,
    sample_rate: int | Sequence[int] | None = None,
    n_quantizers: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[tuple[np.ndarray, ...]]:
    """Codes of each signal (``[T]`` or ``[T, C]`` at `sample_rate`, one rate for all or one per
    signal; default the model's): a tuple of int32 arrays, one per level, ``[F / s_i]`` each,
    equal to `Codec.encode` of that signal alone."""
    codec, params = loaded.codec, loaded.params
    rates = list(sample_rate) if isinstance(sample_rate, Sequence) else [sample_rate] * len(signals)
    if len(rates) != len(signals):
        raise ValueError(f"{len(rates)} sample rates for {len(signals)} signals")
    audio = [_model_signal(loaded, x, r) for x, r in zip(signals, rates, strict=True)]
    m = codec.length_multiple
    blocks = [-(-len(a) // m) for a in audio]
    grouping = _grouping(loaded)
    keys = [
        len(a) if grouping == "samples" else (bucket_blocks(b) if grouping == "bucket" else b) * m
        for a, b in zip(audio, blocks, strict=True)
    ]
    encode = _encode_fn(codec, n_quantizers)
    out: list = [None] * len(audio)
    for group in _groups(keys, max_batch):
        width = keys[group[0]]
        x = np.zeros((len(group), width, codec.channels), np.float32)
        for row, i in enumerate(group):
            x[row, : len(audio[i])] = audio[i]
        codes = [np.asarray(c) for c in encode(params, jnp.asarray(x))]
        for row, i in enumerate(group):
            # SpectroStream's encode adds the decoder's lookahead frames (`Codec._pad`)
            frames = blocks[i] * codec.block_frames + codec.decoder_lookahead_frames
            out[i] = tuple(
                c[row, : frames // s] for c, s in zip(codes, codec.vq_strides, strict=False)
            )
    return out


def decode_batch(
    loaded: LoadedCodec,
    codes: Sequence[Sequence[np.ndarray]],
    lengths: Sequence[int] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> list[np.ndarray]:
    """Audio ``[T_i, channels]`` of each signal's codes (as `encode_batch` gives them; every
    signal the same number of levels), cut to `lengths` (default: whole blocks), equal to
    `Codec.decode` of those codes alone."""
    codec, params = loaded.codec, loaded.params
    if not codes:
        return []
    k = len(codes[0])
    if any(len(c) != k for c in codes):
        raise ValueError("every signal's codes must hold the same number of levels")
    strides = codec.vq_strides[:k]
    B = codec.block_frames
    blocks = []
    for i, c in enumerate(codes):
        f = [len(np.asarray(level)) * s for level, s in zip(c, strides, strict=True)]
        if len(set(f)) != 1 or f[0] % B:
            raise ValueError(f"signal {i}: level lengths {[len(x) for x in c]} do not fit")
        blocks.append(f[0] // B)
    if lengths is None:
        lengths = [b * codec.length_multiple for b in blocks]
    # Equal frame counts (equal shapes) unless the model is causal and zero-padded.
    bucketed = _grouping(loaded) == "bucket"
    keys = [bucket_blocks(b) if bucketed else b for b in blocks]
    decode = _decode_fn(codec)
    out: list = [None] * len(codes)
    for group in _groups(keys, max_batch):
        nb = keys[group[0]]
        cs = [np.zeros((len(group), nb * B // s), np.int32) for s in strides]
        mask = np.zeros((len(group), nb * B), bool)
        for row, i in enumerate(group):
            for level, s in enumerate(strides):
                cs[level][row, : blocks[i] * B // s] = np.asarray(codes[i][level])
            mask[row, : blocks[i] * B] = True
        y = np.asarray(decode(params, [jnp.asarray(c) for c in cs], jnp.asarray(mask)))
        for row, i in enumerate(group):
            out[i] = y[row, : int(lengths[i])]
    return out
