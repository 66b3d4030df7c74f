"""Inference: load a trained codec (`load_codec`), stream it, or process long files in chunks.

from jax_codec.inference import load_codec, StreamingEncoder, StreamingDecoder
codec, params, config = load_codec("runs/base")          # or config=..., random init
enc = StreamingEncoder(codec, params, chunk_frames=2)    # 2 frames = 23.2 ms at 44.1 kHz
dec = StreamingDecoder(codec, params, chunk_frames=2)
codes = enc.push(chunk)                                  # [B, 1024] -> [B, 2, K] or None
audio = dec.push(codes)                                  # -> [B, 1024]
"""

from jax_codec.inference.api import CheckpointNotFoundError, load_codec, resolve_checkpoint
from jax_codec.inference.streaming import (
    StreamingDecoder,
    StreamingEncoder,
    algorithmic_latency,
    chunked_decode,
    chunked_encode,
    stream_roundtrip,
)

__all__ = [
    "CheckpointNotFoundError",
    "StreamingDecoder",
    "StreamingEncoder",
    "algorithmic_latency",
    "chunked_decode",
    "chunked_encode",
    "load_codec",
    "resolve_checkpoint",
    "stream_roundtrip",
]
