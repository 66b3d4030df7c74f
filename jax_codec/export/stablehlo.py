"""Encoder, decoder and streaming steps as serialized StableHLO (`jax.export`), with metadata.

Each part is a pure function with the weights baked in as constants. The offline parts are
exported with two symbolic dimensions: `b` (batch) and `n` (blocks; the audio holds
`n * length_multiple` samples, level i of the codes `n * block_frames / vq_strides[i]`
frames). A host pads its audio to a whole number of blocks, as `Codec.encode` does. The
streaming steps have a fixed batch and chunk, and take and return their state.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from jax_codec import levels
from jax_codec.inference.api import LoadedCodec
from jax_codec.inference.codec_io import atomic_output

PARTS = ("encoder", "decoder", "stream_encoder", "stream_decoder")
STREAM_PARTS = ("stream_encoder", "stream_decoder")
FORMAT = "stablehlo"
METADATA_VERSION = 1


class ExportError(ValueError):
    """A part or setting that cannot be exported; the message names the fix."""


def _check(loaded: LoadedCodec, part: str, n_quantizers: int | None, chunk_frames=None) -> int:
    codec = loaded.codec
    if part not in PARTS:
        raise ExportError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    if part in STREAM_PARTS:
        if not codec.causal:
            raise ExportError(
                f"{loaded.name or 'this model'} is non-causal (it looks ahead) and cannot "
                "stream; export its encoder and decoder parts instead"
            )
        if chunk_frames is None or int(chunk_frames) < 1:
            raise ExportError(f"a {part} needs --chunk_frames N >= 1, got {chunk_frames}")
    k = codec.num_quantizers if n_quantizers is None else int(n_quantizers)
    if not 1 <= k <= codec.num_quantizers:
        raise ExportError(f"--n_quantizers must be in [1, {codec.num_quantizers}], got {k}")
    return k


def input_specs(loaded: LoadedCodec, part: str, n_quantizers: int) -> tuple[Any, ...]:
    """The symbolic argument shapes of `part` (see the module docstring)."""
    codec = loaded.codec
    b, n = jax.export.symbolic_shape("b, n")
    if part == "encoder":
        return (jax.ShapeDtypeStruct((b, n * codec.length_multiple, codec.channels), jnp.float32),)
    block = codec.block_frames
    return (
        tuple(
            jax.ShapeDtypeStruct((b, n * (block // s)), jnp.int32)
            for s in codec.vq_strides[:n_quantizers]
        ),
    )


def _streamer(loaded: LoadedCodec, part: str, k: int, chunk_frames: int, batch: int):
    from jax_codec.inference import streaming

    cls = streaming.StreamingEncoder if part == "stream_encoder" else streaming.StreamingDecoder
    return cls(loaded.codec, loaded.params, int(chunk_frames), int(batch), k)


def export_part(
    loaded: LoadedCodec,
    part: str,
    n_quantizers: int | None = None,
    platforms: tuple[str, ...] | None = None,
    chunk_frames: int | None = None,
    batch: int = 1,
) -> jax.export.Exported:
    """`part` of the first `n_quantizers` levels, exported for `platforms` (default: this
    process's backend):

    - "encoder": `[b, n*L, C]` float32 -> a tuple of int32 codes, one array per level;
    - "decoder": that tuple -> `[b, n*L, C]` float32;
    - "stream_encoder": `(state, chunk [batch, chunk_frames*hop, C])` -> `(codes [batch,
      chunk_frames, k] int32, state)`, `StreamingEncoder.step` with the weights inside;
    - "stream_decoder": `(state, codes [batch, chunk_frames, k])` -> `(audio [batch,
      chunk_frames*hop, C], state)`.

    A stream's state starts as zeros (the step's `init_state()`) and is passed back each
    step. Decoders are the deterministic ones (SNAC's noise blocks add none), as
    `Codec.decode` without a "noise" RNG.
    """
    k = _check(loaded, part, n_quantizers, chunk_frames)
    codec, params = loaded.codec, loaded.params
    if part in STREAM_PARTS:
        s = _streamer(loaded, part, k, chunk_frames, batch)
        if part == "stream_encoder":
            example = jnp.zeros((s.batch, s.chunk_samples, codec.channels), jnp.float32)
        else:
            example = jnp.zeros((s.batch, s.n, s.k), jnp.int32)

        def fn(state, x):
            out, new = s._step(s.variables, state, x)
            if part == "stream_encoder":
                out = out.astype(jnp.int32)
            elif codec.channels == 1:
                out = out[..., None]  # [b, t, 1]: the same layout as the decoder part
            return out, new

        specs = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (s.init_state(), example)
        )
    elif part == "encoder":

        def fn(audio):
            codes = codec.apply(params, audio, k, method=codec.encode)
            return tuple(c.astype(jnp.int32) for c in codes)

        specs = input_specs(loaded, part, k)
    else:

        def fn(codes):
            return codec.apply(params, list(codes), method=codec.decode)

        specs = input_specs(loaded, part, k)
    try:
        return jax.export.export(jax.jit(fn), platforms=platforms)(*specs)
    except Exception as e:  # shape polymorphism or lowering limits of this architecture
        raise ExportError(
            f"cannot export the {part} of {loaded.name or 'this model'}: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:300]}"
        ) from e


def metadata(
    loaded: LoadedCodec, part: str, n_quantizers: int, exported, chunk_frames=None, batch=1
) -> dict:
    """What a host needs to use an artifact and to check it matches a `.jcodec` file."""
    codec, config = loaded.codec, loaded.config
    strides = [int(s) for s in codec.vq_strides[:n_quantizers]]
    extra = {}
    if part in STREAM_PARTS:
        from jax_codec.inference import streaming

        delay = streaming.stream_delay_frames(codec, int(chunk_frames))
        extra = {
            "chunk_frames": int(chunk_frames),
            "chunk_samples": int(chunk_frames) * int(codec.hop_length),
            "batch": int(batch),
            # The state: these arrays, all zeros at the start of a stream, in this order (the
            # leaves of the first input), passed back from each step's second output.
            "state": [str(a) for a in exported.in_avals[:-1]],
            # The encoder's first `delay_chunks` outputs precede the signal: drop them, and
            # feed `delay_chunks` chunks of zeros after the end to flush the last frames.
            "delay_chunks": delay // int(chunk_frames) if part == "stream_encoder" else 0,
            "stream_latency_samples": streaming.stream_latency(codec, int(chunk_frames)),
        }
    return {
        "format": FORMAT,
        "metadata_version": METADATA_VERSION,
        "part": part,
        "model": loaded.name,
        "model_fingerprint": loaded.fingerprint.hex(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "platforms": list(exported.platforms),
        "sample_rate": int(codec.sample_rate),
        "channels": int(codec.channels),
        "stereo": codec.stereo if codec.channels == 2 else None,
        "hop_length": int(codec.hop_length),
        "block_frames": int(codec.block_frames),
        "length_multiple": int(codec.length_multiple),
        "num_quantizers": int(codec.num_quantizers),
        "n_quantizers": int(n_quantizers),
        "vq_strides": strides,
        "codebook_size": int(codec.codebook_size),
        "frame_rates_hz": [float(r) for r in codec.frame_rates[:n_quantizers]],
        "bitrate_kbps": float(codec.bitrate_kbps(n_quantizers)),
        "causal": bool(codec.causal),
        "latency_samples": codec.latency_samples,
        # The level the model was trained at: bring the input there (and the output back),
        # as `compress` and `decompress` do; null: the input's own level.
        "input_level_db": levels.target_db(config),
        **extra,
        "symbolic_dims": {}
        if part in STREAM_PARTS
        else {
            "b": "batch size",
            "n": f"blocks: audio of n * {codec.length_multiple} samples; level i holds "
            f"n * {codec.block_frames} / vq_strides[i] frames",
        },
        "inputs": [str(a) for a in exported.in_avals],
        "outputs": [str(a) for a in exported.out_avals],
    }


def write_artifact(exported: jax.export.Exported, meta: dict, output: str) -> tuple[str, str]:
    """Writes `output` (the serialized module) and `output.json` (the metadata), each
    atomically; returns both paths."""
    meta_path = output + ".json"
    with atomic_output(output) as tmp:
        with open(tmp, "wb") as f:
            f.write(exported.serialize())
    with atomic_output(meta_path) as tmp:
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
    return output, meta_path


def export_file(
    loaded: LoadedCodec,
    part: str,
    output: str,
    n_quantizers=None,
    platforms=None,
    chunk_frames: int | None = None,
    batch: int = 1,
):
    """`export_part` + `metadata` + `write_artifact`; returns the metadata."""
    k = _check(loaded, part, n_quantizers, chunk_frames)
    exported = export_part(loaded, part, k, platforms, chunk_frames, batch)
    meta = metadata(loaded, part, k, exported, chunk_frames, batch)
    write_artifact(exported, meta, output)
    meta["bytes"] = os.path.getsize(output)
    return meta
