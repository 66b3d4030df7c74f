"""Export a codec for runtimes without jax_codec: serialized StableHLO (`jax.export`), ONNX
(jax2onnx, for onnxruntime) and LiteRT/TFLite (jax2tf and the TFLite converter).

  python -m jax_codec export --checkpoint runs/base --part encoder --output enc.stablehlo
  python -m jax_codec export --checkpoint runs/base --part encoder --format onnx --output enc.onnx

An artifact holds one part (the encoder: audio -> codes; the decoder: codes -> audio; or one
step of the streaming encoder or decoder, its state an explicit input and output) with its
weights, a symbolic batch size and length for the offline parts (fixed ones for LiteRT), and a
metadata file beside it (`<output>.json`: rates, strides, latency and the `.jcodec` model
fingerprint, so a host can check it decodes the right files). A StableHLO artifact loads with
JAX alone:

  exported = jax.export.deserialize(open("enc.stablehlo", "rb").read())
  codes = exported.call(audio)          # audio [batch, samples, channels], float32

docs/export.md shows the encode / decode loop in each runtime.
"""

from jax_codec.export.artifact import (
    FORMATS,
    PARTS,
    ExportError,
    PartFunction,
    export_file,
    metadata,
    part_function,
    write_artifact,
)
from jax_codec.export.stablehlo import export_part

__all__ = [
    "FORMATS",
    "PARTS",
    "ExportError",
    "PartFunction",
    "export_file",
    "export_part",
    "metadata",
    "part_function",
    "write_artifact",
]
