"""ONNX through jax2onnx, for onnxruntime and the other ONNX runtimes: the offline parts keep
the symbolic batch and length (dims named `b` and `2048*n`: any values a whole number of
blocks makes), the streaming steps take their state as named inputs (`state_*`) and return it
as outputs (`next_state_*`)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging

from jax_codec.export.artifact import ExportError, PartFunction

# jax2onnx targets this opset by default; named here so an artifact's opset does not change
# with a jax2onnx upgrade. onnxruntime >= 1.23 runs it.
OPSET = 23
INSTALL = 'pip install "jax_codec[export]" && pip install --no-deps "jax2onnx==0.17.1"'


def require() -> None:
    """Raises `ExportError` naming the install unless jax2onnx and onnx import."""
    try:
        import jax2onnx  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as e:
        raise ExportError(
            f"--format onnx needs jax2onnx and onnx ({e.name} is missing): {INSTALL} "
            "(docs/export.md says why --no-deps)"
        ) from None


@contextlib.contextmanager
def _quiet_converter():
    """jax2onnx imports all its plugins, and logs a traceback for each that needs a package we
    do not install (Equinox and dm-pix models, not ours); onnx_ir warns about untyped
    constants it keeps as they are. Neither concerns the user."""
    loggers = [logging.getLogger(n) for n in ("jax2onnx.plugins.plugin_system", "onnx_ir.serde")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def convert(pf: PartFunction, platforms=None) -> tuple[bytes, dict]:
    """`(serialized ModelProto, metadata fields)`; the weights are initializers inside."""
    import jax2onnx

    f, leaves = pf.flat()
    with _quiet_converter():
        model = jax2onnx.to_onnx(
            f,
            leaves,
            model_name=pf.output_names[0],
            opset=OPSET,
            input_names=list(pf.input_names),
            output_names=list(pf.output_names),
        )
    return model.SerializeToString(), {
        "opset": OPSET,
        "converter": f"jax2onnx {importlib.metadata.version('jax2onnx')}",
        "input_names": list(pf.input_names),
        "output_names": list(pf.output_names),
    }
