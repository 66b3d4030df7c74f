"""Inference: load a trained codec (`load_codec`), stream it, or process long files in chunks.

from jax_codec.inference import load_codec, StreamingEncoder, StreamingDecoder
loaded = load_codec("runs/base")                         # or config=..., random init
codec, params, config = loaded                           # a LoadedCodec unpacks as a triple
enc = StreamingEncoder(codec, params, chunk_frames=2)    # 2 frames = 23.2 ms at 44.1 kHz
dec = StreamingDecoder(codec, params, chunk_frames=2)
codes = enc.push(chunk)                                  # [B, 1024] -> [B, 2, K] or None
audio = dec.push(codes)                                  # -> [B, 1024]

- `api`: `load_codec` -> `LoadedCodec`, `resolve_checkpoint`, `latest_finished_step`.
- `batch`: `encode_batch` / `decode_batch`, many signals of different lengths and rates in
  a few compiled batch shapes, each equal to coding it alone.
- `codec_io`: audio <-> `.jcodec` (`encode_to_jcodec`, `decode_jcodec`, `read_jcodec`) and
  `atomic_output`; `streaming`: stateful chunk-by-chunk encode/decode; `chunked`: windowed
  offline encode/decode in constant memory.
- `compress`, `priors`, `cli`: the `python -m jax_codec` commands; `compress_reports`: what
  `compress`, `decompress` and `info` print; `compress_many`: many files per command
  (`--output_dir`), batched through `batch`.

Importing this package is cheap: the names below load their modules (and JAX) on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "api": ("CheckpointNotFoundError", "LoadedCodec", "load_codec", "resolve_checkpoint",
            "latest_finished_step"),
    "batch": ("decode_batch", "encode_batch"),
    "codec_io": ("atomic_output", "encode_to_jcodec", "decode_jcodec", "read_jcodec"),
    "chunked": ("chunked_decode", "chunked_encode"),
    "streaming": ("StreamingDecoder", "StreamingEncoder", "algorithmic_latency",
                  "stream_roundtrip"),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
