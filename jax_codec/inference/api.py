"""Load a trained codec for inference, without any training code.

`load_codec(path)` accepts a training work dir (uses `best/` if present, else the latest
checkpoint), a `best/` export, or one `checkpoints/<step>` directory; `load_codec(config=...)`
builds a randomly initialised codec for benchmarks and tests. It returns a `LoadedCodec`: the
codec, its weights and config, and what a `.jcodec` file needs (name, fingerprint, entropy
priors). It still unpacks as `codec, params, config = load_codec(...)`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_codec.models.codec import Codec, build_codec

PRIORS_NAME = "priors.npz"  # entropy-coding priors, kept beside the weights


class CheckpointNotFoundError(FileNotFoundError):
    """No usable checkpoint at the given path; the message says what was looked for."""


def finished_steps(checkpoints_dir: str) -> list[int]:
    """The steps saved completely in `checkpoints_dir`, ascending (none if it does not exist).

    Orbax writes `<step>.orbax-checkpoint-tmp*` and renames it to `<step>` once every item of
    every process is written, so a bare number is a finished step.
    """
    if not os.path.isdir(checkpoints_dir):
        return []
    return sorted(int(d) for d in os.listdir(checkpoints_dir) if d.isdigit())


def latest_finished_step(checkpoints_dir: str) -> int | None:
    """The newest finished step in `checkpoints_dir`, or None."""
    steps = finished_steps(checkpoints_dir)
    return steps[-1] if steps else None


def _latest_step_dir(checkpoints_dir: str) -> str | None:
    step = latest_finished_step(checkpoints_dir)
    return None if step is None else os.path.join(checkpoints_dir, str(step))


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


@dataclasses.dataclass
class LoadedCodec:
    """A codec ready for inference and for `.jcodec` files (see `load_codec`)."""

    codec: Codec
    params: Any  # the `{'params': ...}` variable dict
    config: ml_collections.ConfigDict
    name: str | None = None  # the model id in `.jcodec` headers (default: `config.name`)
    directory: str | None = None  # the resolved checkpoint directory; None for a random init
    checkpoint: str | None = None  # the path given (work dir, best/ or step dir)
    priors: np.ndarray | None = None  # entropy-coding priors `[K, codebook]`, when found
    priors_path: str | None = None

    def __post_init__(self):
        if self.name is None:
            self.name = str(self.config.get("name", "") or "")

    @functools.cached_property
    def fingerprint(self) -> bytes:
        """`model_fingerprint` of the config and weights (computed on first use)."""
        return model_fingerprint(self.config, self.params)

    def __iter__(self):
        """Unpacks as `codec, params, config`."""
        return iter((self.codec, self.params, self.config))

    def __getitem__(self, index):
        """Indexes like the `(codec, params, config)` tuple `load_codec` used to return."""
        return (self.codec, self.params, self.config)[index]

    def __len__(self) -> int:
        return 3

    def with_priors(self, path: str | None) -> LoadedCodec:
        """A copy using the priors file `path` (None: no entropy coding)."""
        from jax_codec import bitstream

        priors = None if path is None else bitstream.load_priors(path)
        new = dataclasses.replace(self, priors=priors, priors_path=path)
        if "fingerprint" in self.__dict__:
            new.__dict__["fingerprint"] = self.fingerprint
        return new


def default_priors(directory: str | None, checkpoint: str | None = None) -> str | None:
    """`priors.npz` in the checkpoint directory, else in the directory given, else None."""
    for d in (directory, checkpoint):
        if d and os.path.isfile(os.path.join(d, PRIORS_NAME)):
            return os.path.join(d, PRIORS_NAME)
    return None


def load_codec(
    path: str | None = None,
    *,
    config: ml_collections.ConfigDict | None = None,
    seed: int = 0,
    which: str = "best",
    priors: str | None = "auto",
) -> LoadedCodec:
    """The codec, its weights and config, and its entropy priors.

    With `path`, weights come from the checkpoint (EMA params if the run kept them); with only
    `config`, the codec is randomly initialised from `seed`. `which`: see `resolve_checkpoint`.
    `priors`: "auto" loads `priors.npz` from beside the weights when there is one; a path
    loads that file; None loads none.
    """
    directory = checkpoint = None
    if path is None:
        if config is None:
            raise ValueError("load_codec needs a checkpoint path or a config")
        codec = build_codec(config.model)
        x = jnp.zeros((1, codec.length_multiple, codec.channels), jnp.float32)
        params = jax.jit(lambda k: codec.init(k, x))(jax.random.key(seed))
    else:
        kind, directory = resolve_checkpoint(path, which)
        checkpoint = os.fspath(path)
        if kind == "best":
            config = _config_from(_read_json(os.path.join(directory, "config.json")))
            params = _restore(os.path.join(directory, "params"))
        else:
            meta = _read_json(os.path.join(directory, "config", "metadata"))
            config = _config_from(meta["config"])
            state = _restore(os.path.join(directory, "state"))
            params = state.get("ema_params") or state["gen_params"]
        codec = build_codec(config.model)
    loaded = LoadedCodec(codec, params, config, None, directory, checkpoint)
    if priors == "auto":
        priors = default_priors(directory, checkpoint)
    return loaded.with_priors(priors) if priors else loaded


def model_fingerprint(config: ml_collections.ConfigDict, params: Any) -> bytes:
    """sha256 (32 bytes) identifying a model: its `config.model` and every weight.

    Hashes the model config as sorted-key JSON (tuples and lists alike), then, for every leaf of
    the params tree in `jax.tree_util` order (sorted dict keys), its path, dtype, shape and
    little-endian bytes. The same weights loaded from a checkpoint or kept in memory give the
    same fingerprint; any change to a weight or to the architecture changes it. A config may
    be the whole run config (its `model` section is used) or the model section itself.
    """
    import hashlib

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
