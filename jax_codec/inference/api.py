"""Load a trained codec for inference, without any training code.

`load_codec(path)` accepts a training work dir (uses `best/` if present, else the latest
checkpoint), a `best/` export, or one `checkpoints/<step>` directory; `load_codec(config=...)`
builds a randomly initialised codec for benchmarks and tests.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from jax_codec.models.codec import Codec, build_codec


class CheckpointNotFoundError(FileNotFoundError):
    """No usable checkpoint at the given path; the message says what was looked for."""


def _latest_step_dir(checkpoints_dir: str) -> str | None:
    # Finished checkpoints only: Orbax renames `<step>.orbax-checkpoint-tmp*` when complete.
    steps = (
        [d for d in os.listdir(checkpoints_dir) if d.isdigit()]
        if os.path.isdir(checkpoints_dir)
        else []
    )
    return os.path.join(checkpoints_dir, max(steps, key=int)) if steps else None


def _config_from(d: dict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(d)


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _restore_on_one_device(path: str) -> Any:
    """Restore every array onto this process's first device, whatever mesh wrote it."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    tree = checkpointer.metadata(path).item_metadata
    tree = getattr(tree, "tree", tree)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
    return checkpointer.restore(path, target)


def _restore(path: str) -> Any:
    import orbax.checkpoint as ocp

    try:
        return ocp.StandardCheckpointer().restore(path)
    except Exception as e:  # orbax raises many kinds; name the directory and the likely cause
        if "topology" in str(e).lower():
            # Saved by a mesh this process does not have (e.g. several hosts): read it onto
            # one local device instead of the saved shardings.
            try:
                return _restore_on_one_device(path)
            except Exception:
                pass
        raise CheckpointNotFoundError(
            f"could not read the checkpoint at {path} ({type(e).__name__}: {e}); "
            "is it complete and written by jax_codec?"
        ) from None


def resolve_checkpoint(path: str, which: str = "best") -> tuple[str, str]:
    """`(kind, directory)` for a work dir / best export / step dir; kind is 'best' or 'step'.

    For a work dir, `which="best"` takes `best/` when it exists (else the latest step) and
    `which="latest"` takes the latest `checkpoints/<step>`.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which={which!r}: use 'best' or 'latest'")
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"{path} does not exist")
    if os.path.isdir(os.path.join(path, "params")) and os.path.exists(
        os.path.join(path, "config.json")
    ):
        return "best", path
    if os.path.isdir(os.path.join(path, "state")):
        return "step", path
    step_dir = _latest_step_dir(os.path.join(path, "checkpoints"))
    if which == "latest" and step_dir is not None:
        return "step", step_dir
    if os.path.isdir(os.path.join(path, "best", "params")):
        return "best", os.path.join(path, "best")
    if step_dir is not None:
        return "step", step_dir
    raise CheckpointNotFoundError(
        f"no jax_codec checkpoint in {path}: expected a training work dir (with best/ or "
        "checkpoints/<step>/), a best/ export, or a checkpoints/<step> directory"
    )


def load_codec(
    path: str | None = None,
    *,
    config: ml_collections.ConfigDict | None = None,
    seed: int = 0,
    which: str = "best",
) -> tuple[Codec, Any, ml_collections.ConfigDict]:
    """Returns `(codec, params, config)`; `params` is the `{'params': ...}` variable dict.

    With `path`, weights come from the checkpoint (EMA params if the run kept them); with only
    `config`, the codec is randomly initialised from `seed`. `which`: see `resolve_checkpoint`.
    """
    if path is None:
        if config is None:
            raise ValueError("load_codec needs a checkpoint path or a config")
        codec = build_codec(config.model)
        x = jnp.zeros((1, codec.length_multiple, 1), jnp.float32)
        params = jax.jit(lambda k: codec.init(k, x))(jax.random.key(seed))
        return codec, params, config
    kind, directory = resolve_checkpoint(path, which)
    if kind == "best":
        config = _config_from(_read_json(os.path.join(directory, "config.json")))
        params = _restore(os.path.join(directory, "params"))
    else:
        meta = _read_json(os.path.join(directory, "config", "metadata"))
        config = _config_from(meta["config"])
        state = _restore(os.path.join(directory, "state"))
        params = state.get("ema_params") or state["gen_params"]
    return build_codec(config.model), params, config


def model_fingerprint(config: ml_collections.ConfigDict, params: Any) -> bytes:
    """sha256 (32 bytes) identifying a model: its `config.model` and every weight.

    Hashes the model config as sorted-key JSON (tuples and lists alike), then, for every leaf of
    the params tree in `jax.tree_util` order (sorted dict keys), its path, dtype, shape and
    little-endian bytes. The same weights loaded from a checkpoint or kept in memory give the
    same fingerprint; any change to a weight or to the architecture changes it. A config may
    be the whole run config (its `model` section is used) or the model section itself.
    """
    import hashlib

    import numpy as np

    model = config.model if "model" in config else config
    model = model.to_dict() if hasattr(model, "to_dict") else dict(model)
    h = hashlib.sha256()
    h.update(b"jax_codec-model-v1\0")
    h.update(json.dumps(model, sort_keys=True, default=list).encode())
    p = params["params"] if isinstance(params, dict) and "params" in params else params
    for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
        a = np.asarray(leaf)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        h.update(b"\0" + jax.tree_util.keystr(path).encode())
        h.update(f"|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()
