"""SpectroStream's JAX weights (magenta-rt) -> jax_codec params, checked array by array.

The reference (`magenta_rt.jax.spectrostream.SpectroStream`, a Flax linen module built from
`sequence-layers`) holds `params/{encoder, decoder, quantizer}`; each conv's `kernel
[kt, kf, in, out]` and `bias` sit one level deeper than ours (`<block>/<conv>/conv/kernel`), and
the quantizer is one array `embedding [64, 1024, 256]` where ours has a codebook per level
(`quantizer/level{i}/codebook [1024, 256]`). Nothing is transposed: our modules mirror its
layouts (`jax_codec.models.spectrostream`).

Released layout (what `magenta_rt` loads; `_load_jax_weights` in `magenta_rt/jax/system.py` and
`load_spectrostream_weights` in `magenta_rt/mlx/spectrostream/load_weights.py`): safetensors
files whose keys are the parameter paths joined by "/". The Magenta RT checkpoint
(`mrt2_base.safetensors`) holds the SpectroStream quantizer and decoder under
`params/soundstream/` (beside the language model, ignored here); the encoder comes in
`encoder.safetensors` under `params/encoder/`, which magenta_rt reads from the same folder. So
`--weights` is a safetensors file or a folder of them; the encoder, decoder and quantizer are
gathered from every file given (the file, and `encoder.safetensors` beside it), with or without
the `params/` and `params/soundstream/` prefixes. A tree saved from `SpectroStream.init`
(`params/{encoder, decoder, quantizer}/...`) is accepted as it is.

`convert_params(reference_params, config)` is the in-memory conversion (tests, benchmarks);
`convert_file(path, config)` reads the files first. Errors are `ConversionError`s naming the
first missing, mis-shaped or unused array.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jax_codec.convert.core import ConversionError, abstract_params

PARTS = ("encoder", "decoder", "quantizer")
ENCODER_FILE = "encoder.safetensors"


def _flat(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, prefix + (str(k),)))
        else:
            out[prefix + (str(k),)] = v.value if hasattr(v, "unbox") else v  # nn.Partitioned
    return out


def _ours(path: tuple) -> tuple:
    """Reference path -> our path: drop the `conv` level of each conv."""
    return tuple(p for p in path if p != "conv")


def convert_params(reference: Mapping, config) -> dict:
    """The reference's `{encoder, decoder, quantizer}` params (or `{"params": ...}`) -> our
    `{"params": ...}` (numpy float32) for `config`'s codec (`configs/spectrostream_48khz.py`)."""
    if "params" in reference and not any(p in reference for p in PARTS):
        reference = reference["params"]
    missing_parts = [p for p in PARTS if p not in reference]
    if missing_parts:
        found = sorted(reference)[:6]
        raise ConversionError(
            f"the SpectroStream weights have no {', '.join(missing_parts)} (found {found}): "
            f"magenta_rt keeps the encoder in {ENCODER_FILE}, beside the checkpoint holding "
            "the decoder and quantizer; pass both (a folder, or the file with it beside)"
        )
    m = config.model
    if m.get("arch") != "spectrostream":
        raise ConversionError(
            f"--config {config.get('name', '')} is not a SpectroStream preset (model.arch="
            f"{m.get('arch')!r}); use configs/spectrostream_48khz.py"
        )
    theirs = {}
    for part in ("encoder", "decoder"):
        for path, value in _flat(reference[part]).items():
            theirs[(part,) + _ours(path)] = ((part,) + path, value)
    quantizer = _flat(reference["quantizer"])
    if set(quantizer) != {("embedding",)}:
        raise ConversionError(
            f"the SpectroStream quantizer holds {sorted('/'.join(k) for k in quantizer)}, "
            "expected one array quantizer/embedding [codebooks, codes, dims]"
        )
    table = np.asarray(quantizer[("embedding",)])
    if table.ndim != 3 or table.shape[0] != len(m.vq_strides):
        raise ConversionError(
            f"quantizer/embedding has shape {table.shape}: the preset expects "
            f"({len(m.vq_strides)}, {m.codebook_size}, {m.latent_dim}) (wrong --config?)"
        )
    for i in range(table.shape[0]):
        theirs[("quantizer", f"level{i}", "codebook")] = (
            ("quantizer", "embedding", str(i)),
            table[i],
        )
    out: dict = {}
    leaves = jax.tree_util.tree_flatten_with_path(abstract_params(config)["params"])[0]
    for keypath, leaf in leaves:
        path = tuple(getattr(k, "key", str(k)) for k in keypath)
        name = "/".join(path)
        if path not in theirs:
            raise ConversionError(
                f"missing array for {name} {tuple(leaf.shape)} in the SpectroStream weights: "
                "they do not match the preset (wrong --config?)"
            )
        src, value = theirs.pop(path)
        value = np.array(value, np.float32)
        if value.shape != tuple(leaf.shape):
            raise ConversionError(
                f"array {'/'.join(src)} has shape {value.shape}, the preset expects "
                f"{tuple(leaf.shape)} (for {name}): the weights do not match the preset "
                "(wrong --config?)"
            )
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    if theirs:
        src, value = theirs[sorted(theirs)[0]]
        raise ConversionError(
            f"unused array {'/'.join(src)} (shape {np.shape(value)}) in the SpectroStream "
            "weights: they have more than the preset (wrong --config?)"
        )
    return {"params": out}


def _spectrostream_tree(flat: Mapping[str, Any]) -> dict:
    """Safetensors keys (`params/soundstream/decoder/...`, `params/encoder/...`, ...) -> the
    `{encoder, decoder, quantizer}` tree; arrays outside them (a language model) are dropped."""
    tree: dict = {}
    for key, value in flat.items():
        parts = key.split("/")
        for prefix in (("params", "soundstream"), ("params",), ("soundstream",), ()):
            n = len(prefix)
            if tuple(parts[:n]) == prefix and len(parts) > n and parts[n] in PARTS:
                node = tree
                for p in parts[n:-1]:
                    node = node.setdefault(p, {})
                node[parts[-1]] = value
                break
    return tree


def weight_files(path: str) -> list[str]:
    """The safetensors files `path` stands for: the file (and `encoder.safetensors` beside it),
    or every `.safetensors` file of a folder."""
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors")
        )
        if not files:
            raise ConversionError(f"{path} holds no .safetensors files")
        return files
    if not os.path.isfile(path):
        raise ConversionError(f"weights {path} do not exist")
    if not path.endswith(".safetensors"):
        raise ConversionError(
            f"{path}: SpectroStream weights are .safetensors files (magenta_rt's layout)"
        )
    files = [path]
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), ENCODER_FILE)
    if os.path.isfile(beside) and os.path.abspath(beside) != os.path.abspath(path):
        files.append(beside)
    return files


def load_reference(path: str) -> tuple[dict, list[str]]:
    """(`{encoder, decoder, quantizer}` tree, files read) of the weights at `path`."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise ConversionError(
            "reading .safetensors needs the safetensors package (pip install safetensors)"
        ) from None
    files = weight_files(path)
    tree: dict = {}
    for f in files:
        try:
            flat = load_file(f)
        except Exception as e:
            raise ConversionError(f"cannot read {f} as safetensors ({e})") from None
        for part, sub in _spectrostream_tree(flat).items():
            if part in tree:
                raise ConversionError(f"{part} appears in two of the files {files}: pass one")
            tree[part] = sub
    return tree, files


def convert_file(path: str, config) -> tuple[dict, dict]:
    """(our `{"params": ...}`, info for converted.json) of the weights at `path`."""
    tree, files = load_reference(path)
    params = convert_params(tree, config)
    info = {
        "source": "spectrostream",
        "checkpoint": [os.path.abspath(f) for f in files],
        "config": config.get("name", ""),
        "parameters": int(sum(v.size for v in jax.tree.leaves(params))),
    }
    return params, info


def reference_config(model_config) -> Any:
    """The magenta_rt `SpectroStream.Config` of our preset's model (needs magenta-rt; tests and
    benchmarks build the reference with it)."""
    import magenta_rt.jax.spectrostream as ss
    import sequence_layers.jax as sl

    from jax_codec.models.codec import arch_options

    m = model_config
    o = arch_options(m)
    return ss.SpectroStream.Config(
        audio_sample_rate=float(m.sample_rate),
        stft_frame_length=o["stft_frame_length"],
        stft_frame_step=o["stft_frame_step"],
        stft_fft_length=o["stft_fft_length"],
        ratios=o["ratios2d"],
        mults=o["mults"],
        dilations=None,
        is_resnet=True,
        activation=sl.Elu.Config(),
        causal=True,
        num_bins=o["stft_fft_length"] // 2,
        num_channels=2 * m.channels,
        channel_splits=o["channel_splits"],
        channel_recombo_block=o["channel_recombo_block"],
        num_features=m.latent_dim,
        encoder_base_conv_depth=m.encoder_width,
        encoder_base_conv_size=o["base_conv_size"],
        encoder_lookahead=0,
        decoder_base_conv_depth=m.decoder_width,
        decoder_base_conv_size=o["base_conv_size"],
        decoder_lookahead=o["decoder_lookahead"],
        quantizer=ss.ResidualVectorQuantizer.Config(
            num_quantizers=len(m.vq_strides),
            num_embeddings=m.codebook_size,
            embedding_dim=m.latent_dim,
            use_unique_codes=False,
            beta=1.0,
            dynamic_masking=True,
            target_num_quantizers=(1,),
            full_quantizer_dropout_rate=0.5,
            full_quantizer_commitment=False,
        ),
    )
