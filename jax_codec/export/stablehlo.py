"""Serialized StableHLO (`jax.export`): the format that needs JAX alone to load, with symbolic
batch and length (see `jax_codec.export.artifact` for the parts and their shapes)."""

from __future__ import annotations

import jax

from jax_codec.export.artifact import PartFunction, check, converting, part_function
from jax_codec.inference.api import LoadedCodec


def require() -> None:
    """StableHLO needs nothing beyond JAX."""


def export(pf: PartFunction, platforms: tuple[str, ...] | None = None) -> jax.export.Exported:
    return jax.export.export(jax.jit(pf.fn), platforms=platforms)(*pf.args)


def convert(pf: PartFunction, platforms=None) -> tuple[bytes, dict]:
    """`(serialized module, metadata fields)`."""
    exported = export(pf, platforms)
    return exported.serialize(), {"platforms": list(exported.platforms)}


def export_part(
    loaded: LoadedCodec,
    part: str,
    n_quantizers: int | None = None,
    platforms: tuple[str, ...] | None = None,
    chunk_frames: int | None = None,
    batch: int = 1,
) -> jax.export.Exported:
    """`part` (see `artifact.part_function`) of the first `n_quantizers` levels, exported for
    `platforms` (default: this process's backend); call it with `.call(*args)`."""
    k = check(loaded, part, n_quantizers, chunk_frames)
    with converting(loaded, part, "stablehlo"):
        return export(part_function(loaded, part, k, chunk_frames, batch), platforms)
