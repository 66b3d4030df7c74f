"""Inference: load a trained codec (`load_codec`) and encode/decode audio."""

from jax_codec.inference.api import CheckpointNotFoundError, load_codec, resolve_checkpoint

__all__ = ["CheckpointNotFoundError", "load_codec", "resolve_checkpoint"]
