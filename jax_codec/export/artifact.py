"""What every export format shares: the function and argument shapes of each part, the checks,
the metadata and the atomic write. The formats (`stablehlo`, `onnx_export`, `tflite_export`)
turn a `PartFunction` into bytes.

The offline parts take two dimensions, `b` (batch) and `n` (blocks; the audio holds
`n * length_multiple` samples, level i of the codes `n * block_frames / vq_strides[i]` frames):
symbolic by default, so one artifact serves every batch size and length, or fixed (`blocks`,
`batch`) where a runtime needs static shapes (LiteRT). A host pads its audio to a whole number
of blocks, as `Codec.encode` does. The streaming steps have a fixed batch and chunk, and take
and return their state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jax_codec import levels
from jax_codec.inference.api import LoadedCodec
from jax_codec.inference.codec_io import atomic_output
from jax_codec.models.kernels import kernels_mode

PARTS = ("encoder", "decoder", "stream_encoder", "stream_decoder")
STREAM_PARTS = ("stream_encoder", "stream_decoder")
FORMATS = ("stablehlo", "onnx", "tflite")
METADATA_VERSION = 3  # 3: `lookahead_frames`; a stream_decoder's own `delay_chunks`


class ExportError(ValueError):
    """A part, format or setting that cannot be exported; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class PartFunction:
    """One part as a pure function of `args` (a pytree of `jax.ShapeDtypeStruct`), the weights
    inside, and the names its flat inputs and outputs take in formats that name them."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def flat(self) -> tuple[Callable[..., tuple[Any, ...]], list[Any]]:
        """`(f, leaves)`: `fn` taking the leaves of `args` and returning its output's leaves,
        for converters that take flat arrays (ONNX, TensorFlow)."""
        leaves, tree = jax.tree.flatten(self.args)

        def f(*flat_args):
            return tuple(jax.tree.leaves(self.fn(*jax.tree.unflatten(tree, flat_args))))

        return f, leaves


def check(
    loaded: LoadedCodec, part: str, n_quantizers: int | None, chunk_frames=None, fmt="stablehlo"
) -> int:
    """The number of levels to export; raises `ExportError` for a request that cannot be."""
    codec = loaded.codec
    if part not in PARTS:
        raise ExportError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if codec.arch == "spectrostream" and fmt != "stablehlo":
        raise ExportError(
            f"{loaded.name or 'this model'} (SpectroStream) exports to StableHLO only "
            "(--format stablehlo): its STFT's complex FFT gives ONNX models that onnxruntime "
            "rejects (jax2onnx 0.17.1) and fails LiteRT's converter"
        )
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


def input_specs(
    loaded: LoadedCodec, part: str, n_quantizers: int, blocks: int | None = None, batch: int = 1
) -> tuple[Any, ...]:
    """The argument shapes of an offline `part`: symbolic `b` and `n`, or `batch` and
    `blocks` when `blocks` is given (see the module docstring)."""
    codec = loaded.codec
    b, n = jax.export.symbolic_shape("b, n") if blocks is None else (int(batch), int(blocks))
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


def _numbered(prefix: str, count: int) -> tuple[str, ...]:
    width = len(str(max(count - 1, 0)))
    return tuple(f"{prefix}_{i:0{width}d}" for i in range(count))


def part_function(
    loaded: LoadedCodec,
    part: str,
    k: int,
    chunk_frames: int | None = None,
    batch: int = 1,
    blocks: int | None = None,
) -> PartFunction:
    """`part` of the first `k` levels (checked by `check`) as a `PartFunction`:

    - "encoder": audio `[b, n*L, C]` float32 -> a tuple of int32 codes, one array per level;
    - "decoder": that tuple -> `[b, n*L, C]` float32;
    - "stream_encoder": `(state, chunk [batch, chunk_frames*hop, C])` -> `(codes [batch,
      chunk_frames, k] int32, state)`, `StreamingEncoder.step` with the weights inside;
    - "stream_decoder": `(state, codes [batch, chunk_frames, k])` -> `(audio [batch,
      chunk_frames*hop, C], state)`.

    A stream's state starts as zeros (the step's `init_state()`) and is passed back each
    step. Decoders are the deterministic ones (SNAC's noise blocks add none), as
    `Codec.decode` without a "noise" RNG.
    """
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

        state = s.init_state()
        args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (state, example))
        n_state = len(jax.tree.leaves(state))
        data = "chunk" if part == "stream_encoder" else "codes"
        out = "codes" if part == "stream_encoder" else "audio"
        return PartFunction(
            fn, args, (*_numbered("state", n_state), data), (out, *_numbered("next_state", n_state))
        )
    args = input_specs(loaded, part, k, blocks, batch)
    codes = _numbered("codes", k)
    if part == "encoder":

        def fn(audio):
            codes = codec.apply(params, audio, k, method=codec.encode)
            return tuple(c.astype(jnp.int32) for c in codes)

        return PartFunction(fn, args, ("audio",), codes)

    def fn(codes):
        return codec.apply(params, list(codes), method=codec.decode)

    return PartFunction(fn, args, codes, ("audio",))


def check_options(part: str, fmt: str, platforms=None, blocks: int | None = None):
    """The converter of `fmt` (see `converter_for`), once the options that need no model
    agree with it; raises `ExportError` otherwise."""
    if platforms and fmt != "stablehlo":
        raise ExportError(f"--platforms applies to --format stablehlo only, not {fmt}")
    if blocks is not None and int(blocks) < 1:
        raise ExportError(f"--blocks must be >= 1, got {blocks}")
    if fmt == "tflite" and part not in STREAM_PARTS and blocks is None:
        raise ExportError(
            "LiteRT needs fixed shapes: pass --blocks N (audio of N * length_multiple samples "
            "a call) and --batch B (default 1)"
        )
    return converter_for(fmt)


def converter_for(fmt: str):
    """The module that writes `fmt` (its `convert(part_function, platforms) -> (bytes,
    metadata fields)`); raises `ExportError` naming the install if its packages are missing."""
    import importlib

    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    module = {"stablehlo": "stablehlo", "onnx": "onnx_export", "tflite": "tflite_export"}[fmt]
    converter = importlib.import_module(f"jax_codec.export.{module}")
    converter.require()
    return converter


@contextlib.contextmanager
def converting(loaded: LoadedCodec, part: str, fmt: str):
    """Turns a converter's failure (shape polymorphism, an operation the format lacks) into
    one `ExportError` naming the part and format; an `ExportError` passes through."""
    try:
        yield
    except ExportError:
        raise
    except Exception as e:
        message = (str(e).strip().splitlines() or [""])[0][:300]
        # Some layers need the length known (EnCodec's reflect padding of short inputs).
        # (and jax2onnx's symbolic dimensions, which lose track of SpectroStream's STFT).
        shapes = part not in STREAM_PARTS and (
            type(e).__name__ in ("InconclusiveDimensionOperation", "ConcretizationTypeError")
            or "symbolic dim" in message.lower()
        )
        hint = "; export a fixed length instead (--blocks N)" if shapes else ""
        raise ExportError(
            f"cannot export the {part} of {loaded.name or 'this model'} to {fmt}: "
            f"{type(e).__name__}: {message}{hint}"
        ) from e


def signature(pf: PartFunction) -> tuple[list[str], list[str]]:
    """The part's flat input and output shapes, as `float32[b,2048*n,1]`."""
    f, leaves = pf.flat()
    outs = jax.eval_shape(f, *leaves)
    show = lambda a: str(jax.core.ShapedArray(a.shape, a.dtype))
    return [show(a) for a in leaves], [show(a) for a in outs]


def metadata(
    loaded: LoadedCodec,
    part: str,
    n_quantizers: int,
    fmt: str,
    pf: PartFunction,
    chunk_frames=None,
    batch=1,
    **format_fields,
) -> dict:
    """What a host needs to use an artifact and to check it matches a `.jcodec` file;
    `format_fields`: the format's own (platforms, opset, names)."""
    codec, config = loaded.codec, loaded.config
    strides = [int(s) for s in codec.vq_strides[:n_quantizers]]
    inputs, outputs = signature(pf)
    extra = {}
    if part in STREAM_PARTS:
        from jax_codec.inference import streaming

        if part == "stream_encoder":
            delay = streaming.stream_delay_frames(codec, int(chunk_frames))
        else:
            delay = streaming.decoder_delay_frames(codec, int(chunk_frames))
        extra = {
            "chunk_frames": int(chunk_frames),
            "chunk_samples": int(chunk_frames) * int(codec.hop_length),
            "batch": int(batch),
            # The state: these arrays, all zeros at the start of a stream, in this order (the
            # leaves of the first input), passed back from each step's second output.
            "state": inputs[:-1],
            # The step's first `delay_chunks` outputs precede the signal: drop them, and feed
            # that many chunks of zeros after the end to flush the last frames. Nonzero for a
            # decoder that looks ahead (SpectroStream's, a frame), else 0 for the decoder.
            "delay_chunks": delay // int(chunk_frames),
            "stream_latency_samples": streaming.stream_latency(codec, int(chunk_frames)),
        }
    lookahead = int(codec.decoder_lookahead_frames)
    symbolic = any(not isinstance(d, int) for a in jax.tree.leaves(pf.args) for d in a.shape)
    return {
        "format": fmt,
        "metadata_version": METADATA_VERSION,
        "part": part,
        "model": loaded.name,
        "model_fingerprint": loaded.fingerprint.hex(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        **format_fields,
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
        # Frames of codes the encoder adds past the audio's blocks (SpectroStream's decoder
        # looks a frame ahead): decoding F frames gives F * hop samples, the last
        # `lookahead_frames * hop` of them zeros; cut the audio to the input's length.
        "lookahead_frames": lookahead,
        # The level the model was trained at: bring the input there (and the output back),
        # as `compress` and `decompress` do; null: the input's own level.
        "input_level_db": levels.target_db(config),
        **extra,
        "symbolic_dims": {
            "b": "batch size",
            "n": f"blocks: audio of n * {codec.length_multiple} samples; level i holds "
            f"n * {codec.block_frames} / vq_strides[i] frames"
            + (f" (+ {lookahead} from the encoder: `lookahead_frames`)" if lookahead else ""),
        }
        if symbolic
        else {},
        "inputs": inputs,
        "outputs": outputs,
    }


def write_artifact(data: bytes, meta: dict, output: str) -> tuple[str, str]:
    """Writes `output` (the artifact's bytes) and `output.json` (the metadata), each
    atomically; returns both paths."""
    meta_path = output + ".json"
    with atomic_output(output) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    with atomic_output(meta_path) as tmp:
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
    return output, meta_path


def export_file(
    loaded: LoadedCodec,
    part: str,
    output: str,
    n_quantizers: int | None = None,
    platforms: tuple[str, ...] | None = None,
    chunk_frames: int | None = None,
    batch: int = 1,
    fmt: str = "stablehlo",
    blocks: int | None = None,
) -> dict:
    """`part` in format `fmt` to `output`, its metadata to `output.json`; returns the
    metadata. `blocks` fixes the offline parts' shapes (`batch` x `blocks`); LiteRT needs it.
    `platforms` (StableHLO only): the backends to lower for (default: this process's)."""
    converter = check_options(part, fmt, platforms, blocks)
    k = check(loaded, part, n_quantizers, chunk_frames, fmt)
    pf = part_function(loaded, part, k, chunk_frames, batch, blocks)
    # StableHLO runs on XLA, for which the hand-written kernels were written; the other
    # runtimes get the plain ops, which their converters map to native convolutions.
    plain = contextlib.nullcontext() if fmt == "stablehlo" else kernels_mode("reference")
    with converting(loaded, part, fmt), plain:
        data, fields = converter.convert(pf, platforms)
    meta = metadata(loaded, part, k, fmt, pf, chunk_frames, batch, **fields)
    write_artifact(data, meta, output)
    meta["bytes"] = os.path.getsize(output)
    return meta
