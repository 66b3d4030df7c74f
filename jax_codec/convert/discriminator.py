"""PyTorch DAC `Discriminator` state dicts -> our MPD + MRD parameters, checked tensor by tensor.

DAC's training saves the discriminator apart from the generator
(`<save_path>/<tag>/discriminator/weights.pth`, `{"state_dict": ..., "metadata": ...}`); its
`discriminators.{i}` are the MPDs (one per period), then the MSDs, then the MRDs (one per FFT
size), in its constructor's order, which is ours ("mpd", "msd", "mrd"). MPD convs sit at
`discriminators.{i}.convs.{j}.0` and `.conv_post`; MRD convs at
`discriminators.{i}.band_convs.{band}.{j}.0` and `.conv_post`. 2D conv weights `[out, in, kh,
kw]` -> ours `[kh, kw, in, out]`; weight-norm `weight_g` `[out, 1, 1, 1]` -> `[out]`.

The weights do not record the periods or FFT sizes (every MPD and every MRD has the same
shapes): they are taken from the preset, which must list as many as the checkpoint holds.
DAC's MSD is not converted (DAC's released recipe has none; ours resamples differently).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_codec.convert.core import ConversionError, _norm_dim0, _numpy, _strip_prefix

_GENERATOR_PREFIXES = ("encoder.", "decoder.", "quantizer.")
_LEAF_NAMES = r"\.(weight_[gv]|parametrizations\.weight\.original[01]|weight|bias)$"


def _sub_discriminators(tensors: Mapping[str, Any], path: str) -> list[str]:
    """The kind ("mpd", "msd", "mrd") of each `discriminators.{i}` of a DAC state dict."""
    if any(k.startswith(_GENERATOR_PREFIXES) for k in tensors):
        raise ConversionError(
            f"{path} holds a DAC generator (encoder/decoder/quantizer tensors), not a "
            "discriminator: pass DAC's discriminator/weights.pth as --discriminator"
        )
    index: dict[int, str] = {}
    for key, value in tensors.items():
        m = re.match(r"discriminators\.(\d+)\.(convs|band_convs|conv_post)\.", key)
        if m is None:
            raise ConversionError(
                f"{path}: tensor {key} is not part of a DAC Discriminator (expected "
                "discriminators.<i>.convs/band_convs/conv_post...): pass DAC's "
                "discriminator/weights.pth as --discriminator"
            )
        i, part = int(m.group(1)), m.group(2)
        if part == "band_convs":
            index[i] = "mrd"
        elif part == "convs" and re.match(rf"discriminators\.{i}\.convs\.0\.", key):
            if key.endswith(("weight_v", "original1", ".weight")):
                index[i] = "mpd" if len(value.shape) == 4 else "msd"
    if not index or sorted(index) != list(range(len(index))):
        raise ConversionError(f"{path} holds no complete DAC Discriminator state dict")
    return [index[i] for i in range(len(index))]


def _describe(kinds: list[str]) -> str:
    return ", ".join(f"{kinds.count(k)} {k.upper()}" for k in ("mpd", "msd", "mrd"))


def _torch_prefix(keys: tuple[str, ...], offsets: dict[str, int], cfg) -> str:
    """The DAC module prefix of one of our discriminator convs (path without the leaf)."""
    kind, sub, conv = keys
    if kind == "mpd":
        i = offsets["mpd"] + [f"period_{p}" for p in cfg.periods].index(sub)
        if conv == "conv_post":
            return f"discriminators.{i}.conv_post"
        return f"discriminators.{i}.convs.{int(conv[len('conv') :])}.0"
    if kind == "mrd":
        i = offsets["mrd"] + [f"window_{w}" for w in cfg.mrd_window_lengths].index(sub)
        if conv == "conv_post":
            return f"discriminators.{i}.conv_post"
        band, j = re.fullmatch(r"band(\d+)_conv(\d+)", conv).groups()
        return f"discriminators.{i}.band_convs.{band}.{j}.0"
    raise ConversionError(f"internal: no DAC counterpart for discriminator parameter {keys}")


def _take(tensors: Mapping[str, Any], prefix: str, leaf: str, ours: tuple, our_name: str):
    """(value in our layout, torch key) of one conv leaf; any weight-norm spelling."""
    names = {
        "weight_v": ("weight_v", "parametrizations.weight.original1", "weight"),
        "weight_g": ("weight_g", "parametrizations.weight.original0", "weight"),
        "bias": ("bias",),
    }[leaf]
    key = next((f"{prefix}.{n}" for n in names if f"{prefix}.{n}" in tensors), None)
    if key is None:
        raise ConversionError(
            f"missing tensor {prefix}.{names[0]} in the discriminator checkpoint, needed for "
            f"{our_name}: it does not match the preset's discriminator (wrong --config?)"
        )
    t = _numpy(tensors[key])
    plain = key == f"{prefix}.weight"  # weight norm removed: g is the norm of `weight`
    if leaf == "weight_v" or plain:
        want = (ours[-1], ours[-2], *ours[:-2]) if leaf == "weight_v" else None
    else:
        want = (ours[0], 1, 1, 1) if leaf == "weight_g" else ours
    if (want is not None and tuple(t.shape) != want) or (
        plain and leaf == "weight_g" and t.shape[0] != ours[0]
    ):
        raise ConversionError(
            f"tensor {key} has shape {tuple(t.shape)}, the preset expects "
            f"{want or (ours[0], '...')} (for {our_name}): convert with a preset whose "
            "discriminator has DAC's widths (discriminator.channels=32)"
        )
    if leaf == "weight_v":
        value = t.transpose(*range(2, t.ndim), 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
    elif leaf == "weight_g":
        value = (_norm_dim0(t) if plain else t).reshape(ours)
    else:
        value = t
    return np.array(value, np.float32), key  # a copy, never a view of the torch tensor


def abstract_discriminator_params(config: ml_collections.ConfigDict) -> Any:
    """The `{'params': ...}` shapes of the preset's discriminators (nothing is computed)."""
    from jax_codec.models.discriminators import build_discriminators

    disc = build_discriminators(config.discriminator)
    audio = jax.ShapeDtypeStruct((1, 8192, 1), jnp.float32)
    return jax.eval_shape(lambda a: disc.init(jax.random.key(0), a), audio)


def convert_discriminator_state_dict(
    state_dict: Mapping[str, Any], config: ml_collections.ConfigDict, path: str = "the file"
) -> dict:
    """A DAC `Discriminator` state dict -> our `{'params': ...}` (numpy float32) for
    `config.discriminator`. Every parameter must be found with its shape and every tensor
    used; otherwise `ConversionError` says which and what to do."""
    tensors = _strip_prefix(dict(state_dict))
    theirs = _sub_discriminators(tensors, path)
    cfg = config.discriminator
    kinds = tuple(cfg.kinds)
    if "msd" in theirs:
        raise ConversionError(
            f"{path} holds a DAC discriminator with MSDs ({_describe(theirs)}); only MPD and "
            "MRD convert (DAC's released recipe has no MSD)"
        )
    ours = [k for k in ("mpd", "msd", "mrd") if k in kinds for _ in range(_count(cfg, k))]
    if theirs != ours:
        raise ConversionError(
            f"{path} holds {_describe(theirs)} sub-discriminators, the preset's discriminator "
            f"has {_describe(ours)} (discriminator.kinds={kinds}, periods="
            f"{tuple(cfg.periods)}, mrd_window_lengths={tuple(cfg.mrd_window_lengths)}): use "
            "the preset the model was trained with (configs/dac_*.py without runlocal)"
        )
    offsets = {"mpd": 0, "mrd": theirs.count("mpd")}
    abstract = abstract_discriminator_params(config)["params"]
    leaves = []
    for path_, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        keys = tuple(getattr(p, "key", str(p)) for p in path_)
        leaves.append((keys, tuple(leaf.shape), _torch_prefix(keys[:-1], offsets, cfg)))
    # In the checkpoint's order: the first problem reported is the first a reader would meet.
    order: dict[str, int] = {}
    for i, key in enumerate(tensors):
        order.setdefault(re.sub(_LEAF_NAMES, "", key), i)
    leaves.sort(key=lambda leaf: order.get(leaf[2], len(order)))
    out: dict = {}
    used: set[str] = set()
    for keys, shape, prefix in leaves:
        our_name = "/".join(keys)
        value, key = _take(tensors, prefix, keys[-1], shape, our_name)
        used.add(key)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    for key in tensors:
        if key not in used:
            raise ConversionError(
                f"unused tensor {key} (shape {tuple(tensors[key].shape)}) in {path}: it has "
                "more than the preset's discriminator (more bands or layers? wrong --config?)"
            )
    return {"params": out}


def _count(cfg: ml_collections.ConfigDict, kind: str) -> int:
    return len({"mpd": cfg.periods, "msd": cfg.msd_rates, "mrd": cfg.mrd_window_lengths}[kind])


def dac_checkpoint_files(checkpoint: str, discriminator: str = "auto") -> tuple[str, str | None]:
    """(generator file, discriminator file or None) for the converter's DAC flags.

    `checkpoint` is a weights file or a DAC save folder `<save_path>/<tag>` (holding
    `dac/weights.pth`). `discriminator` is a file, "none", or "auto": the
    `<tag>/discriminator/weights.pth` beside `<tag>/dac/weights.pth` when it exists.
    """
    if os.path.isdir(checkpoint):
        generator = os.path.join(checkpoint, "dac", "weights.pth")
        if not os.path.isfile(generator):
            raise ConversionError(
                f"{checkpoint} is a directory without dac/weights.pth: pass a weights file, or "
                "the folder a DAC training run saved (<save_path>/<tag>)"
            )
    else:
        generator = checkpoint
    if discriminator == "none":
        return generator, None
    if discriminator != "auto":
        if not os.path.isfile(discriminator):
            raise ConversionError(
                f"--discriminator {discriminator} does not exist or is not a file"
            )
        return generator, discriminator
    folder, name = os.path.split(os.path.abspath(generator))
    if os.path.basename(folder) != "dac" or name != "weights.pth":  # not a training save
        return generator, None
    beside = os.path.join(os.path.dirname(folder), "discriminator", "weights.pth")
    return generator, beside if os.path.isfile(beside) else None
