"""Entropy-coding priors: per-level code frequencies of a model on some training audio.

`python -m jax_codec priors` (see `inference.compress`) runs `estimate_priors_file`: it encodes
crops of the training data, read (and level-normalized, as `compress` normalizes its input)
by the training pipeline's sources and crop reader, counts the codes per level and writes ``priors.npz`` (atomically) for `compress` to range code with.
A mono model codes each channel of a crop as its own row; a joint-stereo model codes each crop
as one stereo row ``[T, 2]`` (the pipeline keeps pairs together), as `compress` does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np

from jax_codec.cli_errors import CliError, one_line
from jax_codec.inference.api import LoadedCodec


def iter_training_audio(config, specs: list[str], sample_rate: int, length: int, count: int,
                        seed: int) -> Iterator[np.ndarray]:  # fmt: skip
    """`count` crops ``[channels, length]`` of training audio, round robin over `specs`, read
    by the training pipeline's sources and crop reader (silent crops redrawn)."""
    import grain

    from jax_codec.data import pipeline

    readers = []
    for i, spec in enumerate(specs):
        clips = pipeline.make_clips(spec, config, sample_rate, length, seed + i)
        index = pipeline.SlotIndex(clips, length, 0)
        slots = grain.MapDataset.source(index).shuffle(seed=seed + i).repeat()
        stats = pipeline.DataStats()
        readers.append(
            (pipeline.CropReader([clips], slots, length, seed + i, config, stats, None), slots)
        )
    for j in range(count):
        reader, slots = readers[j % len(readers)]
        idx = j // len(readers)
        yield np.ascontiguousarray(reader(idx, slots[idx]).T)


def estimate_priors_file(
    loaded: LoadedCodec,
    output: str,
    *,
    data: str | None = None,
    seconds: float = 600.0,
    crop_seconds: float = 10.0,
    batch: int = 4,
    seed: int = 0,
    window_frames: int | None = None,
    quiet: bool = True,
) -> dict:
    """Encodes `seconds` of training audio (`data`, a source spec, or the config's sources) in
    crops of `crop_seconds`, `batch` rows at a time, and writes the code frequencies per level
    to `output`; returns a report. Bad sources raise `CliError`."""
    from jax_codec import bitstream
    from jax_codec.config import ConfigError
    from jax_codec.data import pipeline
    from jax_codec.inference import chunked
    from jax_codec.inference.codec_io import atomic_output
    from jax_codec.inference.compress import progress

    codec, config = loaded.codec, loaded.config
    sr, mult = codec.sample_rate, codec.length_multiple
    length = max(mult, round(crop_seconds * sr / mult) * mult)
    crops = max(1, math.ceil(seconds * sr / length))
    try:
        specs = [data] if data else pipeline.source_specs(config)[0]
    except ConfigError as e:
        raise CliError(str(e)) from None
    nq, cb = codec.num_quantizers, codec.codebook_size
    joint = codec.channels == 2
    counts = np.zeros((nq, cb), np.int64)
    batch = max(1, batch)

    def encode_batch(rows: list[np.ndarray]):
        x = np.stack(rows)
        n = x.shape[0]
        if n < batch:  # the last batch: pad with copies so every call has one shape
            x = np.concatenate([x, np.repeat(x[:1], batch - n, axis=0)])
        codes = chunked.chunked_encode(codec, loaded.params, x, nq, window_frames)
        codes = tuple(c[:n] for c in codes)
        for level, c in enumerate(codes):
            counts[level] += np.bincount(c.reshape(-1), minlength=cb)
        return codes

    def code_batches(bar):
        rows: list[np.ndarray] = []
        for x in iter_training_audio(config, specs, sr, length, crops, 20_000 + seed):
            if joint:
                rows.append(x.T)  # one stereo row [T, 2]: one code stream for the pair
            else:
                rows.extend(x)  # each channel a row
            if len(rows) >= batch:
                yield encode_batch(rows[:batch])
                rows = rows[batch:]
            bar.update(length / sr)
        if rows:
            yield encode_batch(rows)

    t0 = time.perf_counter()
    try:
        with progress(crops * length / sr, quiet, "priors") as bar:
            priors = bitstream.estimate_priors(code_batches(bar), nq, cb)
    except (ConfigError, pipeline.DataError) as e:
        raise CliError(one_line(e)) from None
    elapsed = time.perf_counter() - t0
    freqs = bitstream.quantize_priors(priors)
    with atomic_output(output) as tmp:
        digest = bitstream.save_priors(tmp, freqs)
    # Expected code length under the priors on the data they came from, vs bit packing.
    logp = np.log2(freqs.astype(np.float64) / 2**bitstream.PRECISION)
    bits = -(counts * logp).sum(axis=1) / np.maximum(counts.sum(axis=1), 1)
    mean_bits = -(counts * logp).sum() / max(int(counts.sum()), 1)
    packed = bitstream.bits_for(cb)
    return {
        "output": output,
        "sha256": digest,
        "sources": specs,
        "seconds": crops * length / sr,
        "num_levels": nq,
        "codebook_size": cb,
        "bits_per_code": [float(b) for b in bits],
        "packed_bits_per_code": packed,
        "expected_gain": float(1.0 - mean_bits / packed),
        "x_realtime": crops * length / sr / elapsed if elapsed > 0 else float("inf"),
    }


def format_priors(r: dict) -> str:
    per = ", ".join(f"{b:.2f}" for b in r["bits_per_code"])
    return (
        f"wrote {r['output']} (sha256 {r['sha256'][:16]}…): {r['num_levels']} levels x "
        f"{r['codebook_size']} codes from {r['seconds']:.1f} s of {', '.join(r['sources'])}\n"
        f"bits per code by level: {per} (bit packed: {r['packed_bits_per_code']}); expected "
        f"entropy-coding gain on this data: {100 * r['expected_gain']:.1f}%"
    )
