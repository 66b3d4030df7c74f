"""`train --init_from=DIR`: start a run from converted (or any jax_codec) generator weights.

The training loop calls `init_generator_from` once, right after creating a fresh train state
(never when resuming: a resumed run already holds its own weights). The generator params (and
their EMA, if the run keeps one) are replaced by the checkpoint's. So are the discriminators when
the checkpoint holds some (a DAC training checkpoint converted with its discriminator/weights.pth)
and this run's discriminators have the same architecture; otherwise they stay fresh (with a log
line saying why). Optimizer states and counters always start fresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from jax_codec.config import ConfigError

# Codec fields that may differ between the checkpoint and the run (not the architecture).
_FREE_FIELDS = ("dtype", "remat", "quantizer_dropout", "parent", "name")


def _flat(tree: Any) -> dict[str, Any]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(str(getattr(k, "key", k)) for k in path)] = leaf
    return out


def _architecture(model_config: ml_collections.ConfigDict) -> dict:
    from jax_codec.models.codec import build_codec

    codec = build_codec(model_config, dtype="float32")
    return {
        f.name: getattr(codec, f.name)
        for f in dataclasses.fields(codec)
        if f.name not in _FREE_FIELDS
    }


def _check_architecture(path: str, source_model: Any, config: ml_collections.ConfigDict):
    theirs, ours = _architecture(source_model), _architecture(config.model)
    for key in ours:
        if theirs.get(key) != ours[key]:
            raise ConfigError(
                f"--init_from={path}: its model has {key}={theirs.get(key)!r}, this run's "
                f"config has {ours[key]!r}; use the preset it was converted with"
            )


def check_init_from(path: str, config: ml_collections.ConfigDict) -> None:
    """Cheap early check (no weights read): `path` is a checkpoint of `config`'s architecture."""
    from jax_codec.inference.api import CheckpointNotFoundError, resolve_checkpoint

    try:
        kind, directory = resolve_checkpoint(path)
        meta = os.path.join(
            directory, *(("config.json",) if kind == "best" else ("config", "metadata"))
        )
        with open(meta) as f:
            saved = json.load(f)
    except (CheckpointNotFoundError, OSError, ValueError) as e:
        raise ConfigError(f"--init_from={path}: {e}") from None
    saved = saved if kind == "best" else saved.get("config", {})
    _check_architecture(path, ml_collections.ConfigDict(saved["model"]), config)


def load_generator_params(path: str, config: ml_collections.ConfigDict) -> Any:
    """The `{'params': ...}` of the checkpoint at `path`, checked against `config.model`."""
    from jax_codec.inference.api import CheckpointNotFoundError, load_codec

    try:
        _, params, source_config = load_codec(path)
    except CheckpointNotFoundError as e:
        raise ConfigError(f"--init_from={path}: {e}") from None
    _check_architecture(path, source_config.model, config)
    return params


def _check_tree(wanted: dict, given: dict, source: str) -> None:
    for key, leaf in wanted.items():
        if key not in given:
            raise ConfigError(f"{source}: the checkpoint has no parameter {key}")
        shape = tuple(np.shape(given[key]))
        if shape != tuple(leaf.shape):
            raise ConfigError(
                f"{source}: parameter {key} has shape {shape} in the checkpoint, "
                f"{tuple(leaf.shape)} in this run"
            )
    for key in given:
        if key not in wanted:
            raise ConfigError(f"{source}: the checkpoint's parameter {key} is not in this model")


def _put(old: Any, new: Any) -> jax.Array:
    host = np.asarray(new, dtype=old.dtype)
    # Each process fills its own shards (works for any sharding, one or many hosts).
    return jax.make_array_from_callback(host.shape, old.sharding, lambda idx: host[idx])


def _placed(target: Any, params: Any, source: str) -> Any:
    """`params` (checked against `target`'s names and shapes) on `target`'s shardings."""
    wanted, given = _flat(target), _flat(params)
    _check_tree(wanted, given, source)
    ordered = jax.tree.unflatten(jax.tree.structure(target), [given[k] for k in wanted])
    return jax.tree.map(_put, target, ordered)


def replace_generator(state: Any, params: Any, source: str = "--init_from") -> Any:
    """`state` with `gen_params` (and `ema_params`) set to `params`, on their shardings."""
    updates = {"gen_params": _placed(state.gen_params, params, source)}
    if state.ema_params is not None:
        updates["ema_params"] = _placed(state.ema_params, params, source)
    return state.replace(**updates)


# Discriminator fields that decide what each weight means (dtype, input normalisation and MPD
# padding do not change the weights' shapes or roles).
_DISC_ARCHITECTURE = (
    "kinds",
    "periods",
    "msd_rates",
    "mrd_window_lengths",
    "mrd_hop_factor",
    "mrd_bands",
    "channels",
)


def _disc_architecture(config: Any) -> dict:
    """The fields of `_DISC_ARCHITECTURE`, and `input_channels`: the audio channels of each
    first conv (2 for a stereo model whose discriminators take the pair, else 1)."""

    def norm(v):
        return [norm(x) for x in v] if isinstance(v, (list, tuple)) else v

    disc = config.get("discriminator", {})
    arch = {k: norm(disc.get(k)) for k in _DISC_ARCHITECTURE}
    stereo = int(config.get("model", {}).get("channels", 1)) > 1
    arch["input_channels"] = 2 if stereo and disc.get("stereo", "rows") == "channels" else 1
    return arch


def load_discriminator_params(path: str, config: ml_collections.ConfigDict) -> Any | None:
    """The checkpoint's converted discriminators (`{'params': ...}`) when it holds some whose
    architecture is this run's; None otherwise (logged, with the reason)."""
    from jax_codec.convert.core import DISC_PARAMS
    from jax_codec.inference.api import _read_json, _restore, resolve_checkpoint

    kind, directory = resolve_checkpoint(path)
    disc_dir = os.path.join(directory, DISC_PARAMS)
    if kind != "best" or not os.path.isdir(disc_dir):
        return None
    saved = _read_json(os.path.join(directory, "config.json"))
    theirs, ours = _disc_architecture(saved), _disc_architecture(config)
    differ = [k for k in ours if theirs[k] != ours[k]]
    if differ:
        logging.warning(
            "--init_from=%s: its discriminators are not taken (%s=%r there, %r in this run); "
            "they start fresh. Use the checkpoint's discriminator settings to take them.",
            path,
            f"discriminator.{differ[0]}" if differ[0] in _DISC_ARCHITECTURE else differ[0],
            theirs[differ[0]],
            ours[differ[0]],
        )
        return None
    return _restore(disc_dir)


def init_generator_from(state: Any, path: str, config: ml_collections.ConfigDict) -> Any:
    """Fresh train `state` with its generator (and EMA) loaded from the checkpoint at `path`,
    and its discriminators too when the checkpoint holds matching ones."""
    source = f"--init_from={path}"
    state = replace_generator(state, load_generator_params(path, config), source)
    disc = load_discriminator_params(path, config)
    if disc is None:
        logging.info("%s: generator taken; discriminators fresh.", source)
        return state
    state = state.replace(disc_params=_placed(state.disc_params, disc, source))
    d = config.discriminator
    logging.warning(
        "%s: generator and discriminators taken (%s; MPD periods %s, MRD windows %s).",
        source,
        "+".join(d.kinds),
        tuple(d.periods),
        tuple(d.mrd_window_lengths),
    )
    return state
