"""Device mesh and shardings: data parallel by default, FSDP of parameters as an option.

This is what `pmap` became: one `jax.jit` over a `Mesh`, with `NamedSharding`s saying how the
batch (split over every device) and the state (replicated, or split over the `fsdp` axis) are
laid out. XLA inserts the gradient all-reduce (or reduce-scatter/all-gather for FSDP). The same
code runs on 1 CPU, 8 GPUs, or a multi-host TPU pod.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jax_codec.config import ConfigError

BATCH_AXES = ("data", "fsdp")


def make_mesh(mesh_config: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
    """A 2D `('data', 'fsdp')` mesh over `devices` (default: all devices of all processes).

    Devices are laid out host-major: process 0's devices first, then process 1's, ...; `fsdp`
    is the inner axis. The batch, split over both axes, then gives every host one contiguous
    block of rows (host `h` of `H` holds rows `h * B/H ... (h+1) * B/H - 1`), and FSDP groups
    stay within a host where they fit. On a single-process TPU the order follows the chips'
    physical topology (`mesh_utils.create_device_mesh`).
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    fsdp = int(mesh_config.fsdp)
    data = int(mesh_config.data)
    if fsdp < 1 or n % fsdp:
        raise ConfigError(f"mesh.fsdp={fsdp} must be >= 1 and divide the {n} devices")
    if data == -1:
        data = n // fsdp
    if data * fsdp != n:
        raise ConfigError(
            f"mesh.data * mesh.fsdp = {data} * {fsdp} must equal the number of devices ({n}); "
            "set mesh.data=-1 to use all remaining devices"
        )
    return Mesh(device_grid(devices, (data, fsdp)), ("data", "fsdp"))


def device_grid(devices: list, shape: tuple[int, ...]) -> np.ndarray:
    """`devices` as an array of `shape`, host-major (see `make_mesh`)."""
    processes = {d.process_index for d in devices}
    if len(processes) == 1 and devices[0].platform == "tpu":
        try:  # ICI-topology-aware order of one host's chips
            return mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
        except (ValueError, NotImplementedError, AssertionError):
            pass
    # A stable sort: within a process the given order (jax.devices(): by id) is kept.
    ordered = sorted(devices, key=lambda d: d.process_index)
    return np.asarray(ordered, dtype=object).reshape(shape)


def process_rows(sharding: jax.sharding.Sharding, global_batch: int) -> np.ndarray:
    """Global batch rows this process feeds, in its local batch's order.

    `jax.make_array_from_process_local_data` places the local rows into the process's
    addressable shards in ascending order of their first row; this is that order.
    """
    spans = set()
    for index in sharding.addressable_devices_indices_map((global_batch,)).values():
        rows = index[0]
        spans.add((rows.start or 0, global_batch if rows.stop is None else rows.stop))
    return np.concatenate([np.arange(a, b) for a, b in sorted(spans)]).astype(np.int64)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The batch axis (axis 0) split over every device of the mesh."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    # big_vision's rule: split the largest axis that the fsdp size divides; keep small leaves
    # replicated, where the communication would cost more than the memory saved.
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for axis in np.argsort(shape)[::-1]:
        if shape[axis] % fsdp == 0:
            spec = [None] * len(shape)
            spec[axis] = "fsdp"
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, min_fsdp_size: int = 2**14) -> Any:
    """Shardings for every leaf of a (abstract) state: replicated, or FSDP-split if fsdp > 1."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree.map(
        lambda x: NamedSharding(mesh, _fsdp_spec(tuple(x.shape), fsdp, min_fsdp_size)),
        abstract_state,
    )
