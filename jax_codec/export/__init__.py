"""Export a codec for runtimes without jax_codec: serialized StableHLO (`jax.export`).

  python -m jax_codec export --checkpoint runs/base --part encoder --output enc.stablehlo

An artifact holds one part (the encoder: audio -> codes; the decoder: codes -> audio; or one
step of the streaming encoder or decoder, its state an explicit input and output) with its
weights, a symbolic batch size and length for the offline parts, and a metadata file beside
it (`<output>.json`: rates, strides, latency and the `.jcodec` model fingerprint, so a host
can check it decodes the right files). Loading it needs JAX alone:

  exported = jax.export.deserialize(open("enc.stablehlo", "rb").read())
  codes = exported.call(audio)          # audio [batch, samples, channels], float32

docs/export.md shows the encode / decode loop.
"""

from jax_codec.export.stablehlo import (
    PARTS,
    ExportError,
    export_file,
    export_part,
    metadata,
    write_artifact,
)

__all__ = [
    "PARTS",
    "ExportError",
    "export_file",
    "export_part",
    "metadata",
    "write_artifact",
]
