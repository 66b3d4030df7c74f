"""PyTorch DAC / EnCodec / SNAC state dicts -> jax_codec params, checked tensor by tensor, saved
(SpectroStream's JAX weights: `jax_codec.convert.spectrostream`, saved the same way).

`convert_state_dict(source, state_dict, config)` is the whole conversion (no torch needed:
tensors may be numpy arrays); `load_checkpoint(path)` reads a `.pth` / `.th` (torch, CPU,
`weights_only=True`) or `.safetensors` file; `save_converted(...)` writes the same layout as
the training loop's `best/` export (`params/` through Orbax's StandardCheckpointer and
`config.json`), so `jax_codec.inference.load_codec(DIR)` and `train --init_from=DIR` read it.

Layouts: torch conv weight `[out, in, k]` -> ours `[k, in, out]`; transposed conv `[in, out, k]`
-> `[k, in, out]`; weight norm `weight_g` `[out, 1, 1]` -> `[out]` (transposed convs: `[in, 1,
1]` -> `[1, in, 1]`, see `layers.WNConvTranspose1d.norm_axis`); old (`weight_g`/`weight_v`) and
new (`parametrizations.weight.original0/1`) weight-norm names, and plain `weight` (weight norm
removed: v = weight, g = its norm); Snake alpha `[1, C, 1]` -> `[C]`; LSTM and Linear weights
transposed; LayerNorm weight -> scale.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_codec.convert import names
from jax_codec.models.codec import arch_options

SOURCES = tuple(names.SOURCES)
# The converted discriminators' directory beside `params/` (absent when none were converted).
DISC_PARAMS = "disc_params"


class ConversionError(ValueError):
    """The checkpoint does not fit the preset, or cannot be read; the message says which tensor."""


def _numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):  # a torch tensor
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def _strip_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    # A state dict saved from a DataParallel / DDP wrapper.
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return state_dict


# ------------------------------------------------------------------------ tensor layouts


def _conv_v(t: np.ndarray, transposed: bool) -> np.ndarray:
    # conv [out, in, k] / transposed conv [in, out, k] -> [k, in, out]
    return t.transpose(2, 0, 1) if transposed else t.transpose(2, 1, 0)


def _conv_v_torch_shape(ours: tuple, transposed: bool) -> tuple:
    k, cin, cout = ours
    return (cin, cout, k) if transposed else (cout, cin, k)


def _norm_dim0(w: np.ndarray) -> np.ndarray:
    """torch's weight_norm(dim=0) g of a weight: the norm of each slice along axis 0."""
    return np.sqrt(np.sum(np.square(w.astype(np.float64)), axis=tuple(range(1, w.ndim))))


class _Source:
    """The state dict being consumed: lookups record which keys were used."""

    def __init__(self, state_dict: Mapping[str, Any]):
        self.tensors = {k: v for k, v in state_dict.items()}
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.tensors

    def take(self, key: str) -> np.ndarray:
        self.used.add(key)
        return _numpy(self.tensors[key])

    def shape(self, key: str) -> tuple:
        return tuple(self.tensors[key].shape)


def _conv_leaf(src: _Source, prefix: str, leaf: str, transposed: bool, ours: tuple):
    """(array in our layout, torch key, expected torch shape) of a conv parameter."""
    if leaf == "bias":
        return lambda t: t, f"{prefix}.bias", tuple(ours)
    old = {"weight_v": "weight_v", "weight_g": "weight_g"}[leaf]
    new = {"weight_v": "original1", "weight_g": "original0"}[leaf]
    candidates = [f"{prefix}.{old}", f"{prefix}.parametrizations.weight.{new}"]
    key = next((c for c in candidates if src.has(c)), None)
    plain = f"{prefix}.weight"
    if leaf == "weight_v":
        want = _conv_v_torch_shape(ours, transposed)
        if key is None and src.has(plain):
            key = plain
        return (lambda t: _conv_v(t, transposed)), key or candidates[0], want
    # weight_g: [C, 1, 1] (C = out for a conv, in for a transposed conv) -> ours
    c = ours[0] if len(ours) == 1 else ours[1]
    if key is None and src.has(plain):
        # Weight norm removed: g = the norm that weight_norm(dim=0) would have.
        return (lambda t: _norm_dim0(t).astype(np.float32).reshape(ours)), plain, None
    return (lambda t: t.reshape(ours)), key or candidates[0], (c, 1, 1)


def _leaf_rule(src: _Source, prefix: str, kind: str, leaf: str, ours: tuple):
    """(to_ours, torch key, expected torch shape or None to skip the shape check)."""
    if kind in ("conv", "convtr"):
        if leaf not in ("weight_v", "weight_g", "bias"):
            raise names.NameError_(f"{prefix}:{leaf}")
        return _conv_leaf(src, prefix, leaf, kind == "convtr", ours)
    if kind == "snake" and leaf == "alpha":
        return (lambda t: t.reshape(ours)), f"{prefix}.alpha", (1, ours[0], 1)
    if kind == "embedding" and leaf == "codebook":
        return (lambda t: t), prefix, tuple(ours)
    if kind == "layernorm" and leaf in ("scale", "bias"):
        key = f"{prefix}.{'weight' if leaf == 'scale' else 'bias'}"
        return (lambda t: t), key, tuple(ours)
    if kind == "linear" and leaf == "kernel":  # torch Linear weight [out, in] -> [in, out]
        return (lambda t: t.T), f"{prefix}.weight", tuple(ours[::-1])
    if kind == "lstm":
        if leaf.startswith("weight_"):
            return (lambda t: t.T), f"{prefix}.{leaf}", tuple(ours[::-1])
        if leaf.startswith("bias_"):
            return (lambda t: t), f"{prefix}.{leaf}", tuple(ours)
    raise names.NameError_(f"{prefix}:{leaf}")


def dac_kwargs(m: ml_collections.ConfigDict) -> dict:
    """The preset's model as `dac.DAC(**kwargs)` spells it (reference models in tests and
    benchmarks)."""
    return {
        "encoder_dim": m.encoder_width,
        "encoder_rates": list(m.encoder_strides),
        "latent_dim": m.latent_dim,
        "decoder_dim": m.decoder_width,
        "decoder_rates": list(m.decoder_strides),
        "n_codebooks": len(m.vq_strides),
        "codebook_size": m.codebook_size,
        "codebook_dim": m.codebook_dim,
        "sample_rate": m.sample_rate,
    }


def _snac_kwargs(m: ml_collections.ConfigDict) -> dict:
    """The preset as `snac.SNAC(**kwargs)` / a SNAC release's config.json would spell it."""
    return {
        "sampling_rate": m.sample_rate,
        "encoder_dim": m.encoder_width,
        "encoder_rates": list(m.encoder_strides),
        "latent_dim": m.latent_dim,
        "decoder_dim": m.decoder_width,
        "decoder_rates": list(m.decoder_strides),
        "attn_window_size": arch_options(m)["attn_window"] or None,
        "codebook_size": m.codebook_size,
        "codebook_dim": m.codebook_dim,
        "vq_strides": list(m.vq_strides),
        "noise": arch_options(m)["noise"],
        "depthwise": arch_options(m)["depthwise"],
    }


def _check_snac_metadata(config: Mapping, m: ml_collections.ConfigDict) -> None:
    """A SNAC release's config.json against the preset (sampling_rate is not in the shapes:
    the 32 and 44.1 kHz models have the same tensors)."""
    for key, value in _snac_kwargs(m).items():
        if key not in config:
            continue
        theirs = config[key]
        if key == "latent_dim" and theirs is None:  # SNAC's default
            theirs = config.get("encoder_dim", 64) * 2 ** len(config.get("encoder_rates", [0] * 4))
        if isinstance(theirs, (tuple, list)):
            theirs = list(theirs)
        if theirs != value:
            raise ConversionError(
                f"the checkpoint's SNAC config.json has {key}={theirs!r}, the preset has "
                f"{value!r}: choose the preset that matches the checkpoint"
            )


def _check_metadata(source: str, metadata: Any, m: ml_collections.ConfigDict) -> None:
    """DAC checkpoints store their constructor kwargs, SNAC releases a config.json beside the
    weights: compare them with the preset."""
    if source == "snac" and isinstance(metadata, Mapping):
        _check_snac_metadata(metadata, m)
    if source != "dac" or not isinstance(metadata, Mapping):
        return
    kwargs = metadata.get("kwargs")
    if not isinstance(kwargs, Mapping):
        return
    ours = {
        "encoder_dim": m.encoder_width,
        "encoder_rates": list(m.encoder_strides),
        "latent_dim": m.latent_dim,
        "decoder_dim": m.decoder_width,
        "decoder_rates": list(m.decoder_strides),
        "n_codebooks": len(m.vq_strides),
        "codebook_size": m.codebook_size,
        "codebook_dim": m.codebook_dim,
        "sample_rate": m.sample_rate,
    }
    for key, value in ours.items():
        if key not in kwargs:
            continue
        theirs = kwargs[key]
        if key == "latent_dim" and theirs is None:  # DAC's default
            theirs = kwargs.get("encoder_dim", 64) * 2 ** len(
                kwargs.get("encoder_rates", [2, 4, 8, 8])
            )
        if isinstance(theirs, (tuple, list)):
            theirs = list(theirs)
        if theirs != value:
            raise ConversionError(
                f"the checkpoint's DAC was built with {key}={theirs!r}, the preset has "
                f"{value!r}: choose the preset that matches the checkpoint"
            )


def abstract_params(config: ml_collections.ConfigDict) -> Any:
    """The `{'params': ...}` shapes of the preset's codec (nothing is computed)."""
    from jax_codec.models.codec import build_codec

    codec = build_codec(config.model, dtype="float32")
    audio = jax.ShapeDtypeStruct((1, codec.length_multiple, codec.channels), jnp.float32)
    return jax.eval_shape(lambda a: codec.init(jax.random.key(0), a), audio)


def convert_state_dict(
    source: str,
    state_dict: Mapping[str, Any],
    config: ml_collections.ConfigDict,
    metadata: Any = None,
) -> dict:
    """A torch state dict -> our `{'params': ...}` (numpy float32) for `config`'s codec.

    Every parameter of ours must be found with the right shape and every tensor of the state
    dict used (EnCodec's k-means statistics excepted); otherwise `ConversionError` names the
    first missing, mis-shaped or unused tensor.
    """
    if source not in names.SOURCES:
        raise ConversionError(f"unknown source {source!r}; choose from {SOURCES}")
    m = config.model
    _check_metadata(source, metadata, m)
    src = _Source(_strip_prefix(dict(state_dict)))
    abstract = abstract_params(config)["params"]
    flat = jax.tree_util.tree_flatten_with_path(abstract)[0]
    rules = []
    for path, leaf in flat:
        keys = tuple(getattr(p, "key", str(p)) for p in path)
        ours = tuple(leaf.shape)
        try:
            prefix, kind = names.torch_module(source, keys[:-1], m)
            rules.append((keys, ours, *_leaf_rule(src, prefix, kind, keys[-1], ours)))
        except names.NameError_:
            raise ConversionError(
                f"the preset's parameter {'/'.join(keys)} has no {source} counterpart: this "
                f"preset cannot be converted from {source} (wrong --from or --config?)"
            ) from None
    # Check in the checkpoint's order (encoder first), tensors it lacks last: the first
    # problem reported is the first one a reader of the state dict would meet.
    order = {k: i for i, k in enumerate(src.tensors)}
    rules.sort(key=lambda r: order.get(r[3], len(order)))
    out: dict = {}
    for keys, ours, to_ours, key, want in rules:
        our_name = "/".join(keys)
        if not src.has(key):
            raise ConversionError(
                f"missing tensor {key} (shape {want or '?'}) in the checkpoint, needed for "
                f"{our_name}: the checkpoint does not match the preset (wrong --config?)"
            )
        if want is not None and src.shape(key) != want:
            raise ConversionError(
                f"tensor {key} has shape {src.shape(key)}, the preset expects {want} "
                f"(for {our_name}): the checkpoint does not match the preset (wrong --config?)"
            )
        # A copy: torch tensors share memory with their numpy views, and an optimizer step on
        # the source model must not change the converted weights.
        value = np.array(to_ours(src.take(key)), np.float32)
        if value.shape != ours:  # a bug in a layout rule, not a user error
            raise ConversionError(f"internal: {key} -> {value.shape}, {our_name} needs {ours}")
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    ignored = [re.compile(p) for p in names.IGNORED[source]]
    for key in sorted(src.tensors):
        if key in src.used or any(p.fullmatch(key) for p in ignored):
            continue
        raise ConversionError(
            f"unused tensor {key} (shape {src.shape(key)}) in the checkpoint: it has more "
            f"than the preset (more codebooks or layers? wrong --config?)"
        )
    return {"params": out}


# --------------------------------------------------------------------------- file I/O


def load_checkpoint(path: str, trust: bool = False) -> tuple[dict[str, Any], Any]:
    """`(state_dict, metadata)` of a `.pth` / `.th` / `.pt` / `.safetensors` file.

    torch files are read on the CPU with `weights_only=True` (no code from the file runs);
    `trust=True` allows a full unpickle for files that need it. A dict holding a
    `state_dict` (DAC's `{"state_dict": ..., "metadata": ...}`) is unwrapped.
    """
    if not os.path.isfile(path):
        raise ConversionError(f"checkpoint {path} does not exist or is not a file")
    if path.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ConversionError(
                "reading .safetensors needs the safetensors package (pip install safetensors)"
            ) from None
        try:
            return load_file(path), None
        except Exception as e:
            raise ConversionError(f"cannot read {path} as safetensors ({e})") from None
    try:
        import torch
    except ImportError:
        raise ConversionError(
            "reading a .pth/.th checkpoint needs PyTorch: pip install torch==2.13.0 (the CPU "
            "build is enough)"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if trust else " (if you trust the file, --trust_weights unpickles it fully)"
        raise ConversionError(f"cannot read {path} with torch.load: {first}{hint}") from None
    metadata = None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        metadata = obj.get("metadata")
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(hasattr(v, "shape") for v in obj.values()):
        what = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ConversionError(f"{path} holds no state dict of tensors (found {what})")
    return dict(obj), metadata


def snac_release_config(checkpoint: str) -> dict | None:
    """The `config.json` of a SNAC release beside its `pytorch_model.bin`, if there is one.

    (A Hugging Face snapshot of hubertsiuzdak/snac_32khz holds both.) Anything else named
    config.json, or an unreadable one, is ignored: the tensor checks still apply.
    """
    path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(config, dict) and "encoder_rates" in config and "vq_strides" in config:
        return config
    return None


def save_converted(
    params: Any,
    config: ml_collections.ConfigDict,
    output: str,
    info: dict | None = None,
    discriminator_params: Any = None,
) -> str:
    """Write `output/{params, config.json, converted.json}` (the training loop's `best/` layout),
    plus `output/disc_params` when discriminator weights are given (`train --init_from` then
    starts from them too).

    Written to `output.tmp` and renamed, so a failed save leaves no half checkpoint.
    """
    import shutil

    import orbax.checkpoint as ocp

    output = os.path.abspath(output)
    tmp = output + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(os.path.join(tmp, "params"), jax.tree.map(jnp.asarray, params))
    ckptr.wait_until_finished()
    if discriminator_params is not None:
        ckptr.save(os.path.join(tmp, DISC_PARAMS), jax.tree.map(jnp.asarray, discriminator_params))
        ckptr.wait_until_finished()
    with open(os.path.join(tmp, "config.json"), "w") as f:
        f.write(json.dumps(config.to_dict(), default=list))
    with open(os.path.join(tmp, "converted.json"), "w") as f:
        f.write(json.dumps(info or {}, indent=1, default=str))
    if os.path.exists(output):
        shutil.rmtree(output)
    os.rename(tmp, output)
    return output


def convert_checkpoint(
    source: str,
    checkpoint: str,
    config: ml_collections.ConfigDict,
    output: str,
    trust: bool = False,
    discriminator: str | None = None,
) -> str:
    """Load `checkpoint`, convert it for `config`, save to `output`; returns the directory.

    `discriminator`: a DAC `Discriminator` weights file (DAC's training saves it as
    `<tag>/discriminator/weights.pth`), converted onto `config.discriminator` as well.
    """
    if source == "spectrostream":
        if discriminator is not None:
            raise ConversionError("--discriminator converts DAC discriminators only")
        from jax_codec.convert.spectrostream import convert_file

        params, info = convert_file(checkpoint, config)
        return save_converted(params, config, output, info)
    if discriminator is not None and source != "dac":
        raise ConversionError(f"--discriminator converts DAC discriminators only, not {source}")
    state_dict, metadata = load_checkpoint(checkpoint, trust)
    if any(k.startswith(("discriminators.", "module.discriminators.")) for k in state_dict):
        raise ConversionError(
            f"{checkpoint} holds a DAC discriminator, not the generator: pass it as "
            "--discriminator and the generator (dac/weights.pth) as --weights"
        )
    if source == "snac" and metadata is None:
        metadata = snac_release_config(checkpoint)
    params = convert_state_dict(source, state_dict, config, metadata)
    disc_params = None
    if discriminator is not None:
        from jax_codec.convert.discriminator import convert_discriminator_state_dict

        disc_state_dict, _ = load_checkpoint(discriminator, trust)
        disc_params = convert_discriminator_state_dict(disc_state_dict, config, discriminator)
    n = sum(v.size for v in jax.tree.leaves(params))
    info = {
        "source": source,
        "checkpoint": os.path.abspath(checkpoint),
        "config": config.get("name", ""),
        "tensors": len(state_dict),
        "parameters": int(n),
    }
    if discriminator is not None:
        info["discriminator"] = os.path.abspath(discriminator)
        info["discriminator_parameters"] = int(sum(v.size for v in jax.tree.leaves(disc_params)))
    return save_converted(params, config, output, info, disc_params)
