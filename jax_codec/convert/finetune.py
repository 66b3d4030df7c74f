"""`train --init_from=DIR`: start a run from converted (or any jax_codec) generator weights.

The training loop calls `init_generator_from` once, right after creating a fresh train state
(never when resuming: a resumed run already holds its own weights). The generator params (and
their EMA, if the run keeps one) are replaced by the checkpoint's; discriminators, optimizer
states and counters stay fresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np

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


def replace_generator(state: Any, params: Any, source: str = "--init_from") -> Any:
    """`state` with `gen_params` (and `ema_params`) set to `params`, on their shardings."""
    wanted, given = _flat(state.gen_params), _flat(params)
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

    def put(old, new):
        host = np.asarray(new, dtype=old.dtype)
        # Each process fills its own shards (works for any sharding, one or many hosts).
        return jax.make_array_from_callback(host.shape, old.sharding, lambda idx: host[idx])

    ordered = jax.tree.unflatten(
        jax.tree.structure(state.gen_params),
        [given[k] for k in _flat(state.gen_params)],
    )
    gen = jax.tree.map(put, state.gen_params, ordered)
    updates = {"gen_params": gen}
    if state.ema_params is not None:
        updates["ema_params"] = jax.tree.map(put, state.ema_params, ordered)
    return state.replace(**updates)


def init_generator_from(state: Any, path: str, config: ml_collections.ConfigDict) -> Any:
    """Fresh train `state` with its generator (and EMA) loaded from the checkpoint at `path`."""
    return replace_generator(state, load_generator_params(path, config), f"--init_from={path}")
