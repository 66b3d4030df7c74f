"""LiteRT (TFLite) flatbuffers through jax2tf and TensorFlow's TFLite converter, for the LiteRT
interpreter (`ai-edge-litert`) on phones and embedded hosts.

Shapes are fixed: the TFLite converter legalizes neither the quantizer's argmax nor the
gathers of a shape-polymorphic module (TF 2.21), so the offline parts are exported for one
batch size and one length (`--batch`, `--blocks`). One signature, `serving_default`, names
the inputs and outputs as the ONNX export does.
"""

from __future__ import annotations

from jax_codec.export.artifact import ExportError, PartFunction

INSTALL = 'pip install "jax_codec[export]"'


def require() -> None:
    """Raises `ExportError` naming the install unless TensorFlow (jax2tf's target) imports."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        raise ExportError(f"--format tflite needs TensorFlow (CPU): {INSTALL}") from None


def convert(pf: PartFunction, platforms=None) -> tuple[bytes, dict]:
    """`(flatbuffer, metadata fields)`: TFLite builtin ops only (no TensorFlow ops), float32."""
    import tensorflow as tf
    from jax.experimental import jax2tf

    f, leaves = pf.flat()
    jax_fn = jax2tf.convert(f, with_gradient=False)
    specs = [tf.TensorSpec(a.shape, a.dtype, name=n) for a, n in zip(leaves, pf.input_names)]

    @tf.function(input_signature=specs, autograph=False)
    def serving_default(*args):
        return dict(zip(pf.output_names, jax_fn(*args)))

    module = tf.Module()
    module.serving_default = serving_default
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_default.get_concrete_function()], module
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert(), {
        "converter": f"jax2tf + tensorflow {tf.__version__}",
        "signature": "serving_default",
        "input_names": list(pf.input_names),
        "output_names": list(pf.output_names),
    }
