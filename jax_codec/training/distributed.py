"""Multi-host start-up: `jax.distributed` from flags, Cloud TPU or SLURM, or nothing at all.

JAX's multi-controller runtime runs one process per host (or per GPU); every process runs the
same program, and `jax.devices()` then lists the devices of all of them. `maybe_initialize`
starts that runtime exactly once, before anything touches a device:

- explicit flags (`--coordinator_address=HOST:PORT --num_processes=N --process_id=I`, optionally
  `--local_device_ids=0,1`): any cluster, including CPU processes on one machine;
- automatically under SLURM (`srun` with more than one task) and Open MPI (`mpirun -n N`, N > 1),
  and on a Cloud TPU VM slice with more than one worker (GCE metadata or GKE env vars):
  `jax.distributed.initialize()` detects the coordinator, process count and id itself;
- otherwise nothing: a plain single-machine run never waits for a coordinator.

`--num_processes=1` turns the automatic detection off.
"""

from __future__ import annotations

import glob
import os
import re
import urllib.request
from collections.abc import Sequence

import jax

# Google's PCI vendor id and the device ids of TPU chips (v2 ... v6e), as in
# jax._src.hardware_utils. gVNIC network cards share the vendor id, hence the device list.
_GOOGLE_PCI_VENDOR = "0x1ae0"
_TPU_PCI_DEVICES = {"0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076"}
_GCE_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")

_initialized_by: str | None = None


class DistributedError(ValueError):
    """Inconsistent multi-host flags or environment; the message says what to set."""


def parse_device_ids(value: str | Sequence[int] | None) -> list[int] | None:
    """`"0,1,3"` (or a list) -> `[0, 1, 3]`; None or "" -> None."""
    if value is None or value == "" or (not isinstance(value, str) and len(value) == 0):
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        ids = [int(str(x).strip()) for x in items]
    except ValueError:
        raise DistributedError(
            f"--local_device_ids={value!r} must be comma-separated device numbers, e.g. 0,1,2,3"
        ) from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise DistributedError(f"--local_device_ids={value!r} must be distinct numbers >= 0")
    return ids


def validate(
    coordinator_address: str | None,
    num_processes: int | None,
    process_id: int | None,
) -> None:
    """Raise `DistributedError` (one line) if the explicit flags cannot describe a cluster."""
    if num_processes is not None and num_processes < 1:
        raise DistributedError(f"--num_processes={num_processes} must be >= 1")
    if process_id is not None and process_id < 0:
        raise DistributedError(f"--process_id={process_id} must be >= 0")
    if num_processes is None and (process_id is not None or coordinator_address):
        raise DistributedError(
            "--num_processes is required with --process_id/--coordinator_address "
            "(the total number of processes, the same on every host)"
        )
    if num_processes is None or num_processes == 1:
        if process_id not in (None, 0):
            raise DistributedError(
                f"--process_id={process_id} must be < --num_processes={num_processes or 1}"
            )
        return
    if process_id is None:
        raise DistributedError(
            f"--process_id is required with --num_processes={num_processes} "
            f"(0 on the coordinator host, 1 ... {num_processes - 1} on the others)"
        )
    if process_id >= num_processes:
        raise DistributedError(
            f"--process_id={process_id} must be < --num_processes={num_processes} "
            f"(ids are 0 ... {num_processes - 1})"
        )
    if not coordinator_address:
        raise DistributedError(
            f"--coordinator_address=HOST:PORT is required with --num_processes={num_processes} "
            "(the address of process 0, the same on every host, e.g. 10.0.0.2:12345)"
        )
    if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}", coordinator_address) or not (
        0 < int(coordinator_address.rsplit(":", 1)[1]) < 65536
    ):
        raise DistributedError(
            f"--coordinator_address={coordinator_address!r} must be HOST:PORT, "
            "e.g. 10.0.0.2:12345 or localhost:12345"
        )


# --------------------------------------------------------------------------- detection


def _slurm_process_count() -> int:
    """Tasks of the current `srun` step (0 if not inside one)."""
    if not all(v in os.environ for v in _SLURM_VARS):
        return 0
    try:
        return int(os.environ["SLURM_NTASKS"])
    except ValueError:
        return 0


def _ompi_process_count() -> int:
    if "OMPI_MCA_orte_hnp_uri" not in os.environ and "OMPI_MCA_prte_hnp_uri" not in os.environ:
        return 0
    try:
        return int(os.environ.get("OMPI_COMM_WORLD_SIZE", "0"))
    except ValueError:
        return 0


def _tpu_chips() -> int:
    """TPU chips attached to this VM through PCI (no device is opened)."""
    n = 0
    for vendor in glob.glob("/sys/bus/pci/devices/*/vendor"):
        try:
            with open(vendor) as f:
                if f.read().strip() != _GOOGLE_PCI_VENDOR:
                    continue
            with open(os.path.join(os.path.dirname(vendor), "device")) as f:
                n += f.read().strip() in _TPU_PCI_DEVICES
        except OSError:
            continue
    return n


def _gce_metadata(key: str, timeout: float = 2.0) -> str | None:
    request = urllib.request.Request(_GCE_METADATA + key, headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()
    except OSError:
        return None


def _tpu_worker_count() -> int:
    """Workers (hosts) of this Cloud TPU slice; 0 when not on a TPU VM."""
    if _tpu_chips() == 0:
        return 0
    slices = int(os.environ.get("MEGASCALE_NUM_SLICES", "1") or 1)
    hosts = os.environ.get("TPU_PROCESS_ADDRESSES") or os.environ.get("TPU_WORKER_HOSTNAMES")
    if hosts is None:  # a GCE TPU VM: the slice's workers are in the instance metadata
        hosts = _gce_metadata("worker-network-endpoints")
    if not hosts:
        return 0
    return slices * len([h for h in hosts.split(",") if h.strip()])


def detect_cluster() -> tuple[str, int] | None:
    """(`"slurm"`, `"openmpi"` or `"tpu"`, process count) of a detected cluster, else None."""
    for name, count in (("slurm", _slurm_process_count), ("openmpi", _ompi_process_count)):
        n = count()
        if n:
            return name, n
    n = _tpu_worker_count()
    return ("tpu", n) if n else None


# --------------------------------------------------------------------------- start-up


def maybe_initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: str | Sequence[int] | None = None,
) -> str | None:
    """Start `jax.distributed` when this run spans several processes; once per process.

    Returns how it was started: `"flags"`, `"slurm"`, `"openmpi"`, `"tpu"`, or None for a
    single-process run (no-op). Raises `DistributedError` for inconsistent flags.
    """
    global _initialized_by
    validate(coordinator_address, num_processes, process_id)
    device_ids = parse_device_ids(local_device_ids)
    if _initialized_by is not None or jax.distributed.is_initialized():
        return _initialized_by or "already"
    if num_processes == 1:
        return None
    if num_processes is not None:
        how = "flags"
        kwargs = dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=device_ids,
        )
    else:
        cluster = detect_cluster()
        if cluster is None or cluster[1] <= 1:
            return None
        how = cluster[0]
        # Coordinator, count and id come from the environment (jax.distributed's detection).
        kwargs = dict(coordinator_address=coordinator_address, local_device_ids=device_ids)
    # CPU processes talk through gloo (TCP); without it cross-process CPU collectives fail.
    # The setting only concerns the CPU backend, so it is harmless on GPU/TPU hosts.
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        raise DistributedError(
            f"jax.distributed.initialize failed ({how}): {str(e).splitlines()[0]}"
        ) from None
    _initialized_by = how
    return how


def describe() -> str:
    """One line: process i/n, local and global device counts (touches the devices)."""
    return (
        f"process {jax.process_index()}/{jax.process_count()}: "
        f"{jax.local_device_count()} local of {jax.device_count()} "
        f"{jax.devices()[0].platform} devices"
    )


_barrier_count = 0


def barrier(name: str, timeout_s: float = 3600.0) -> None:
    """Wait until every process reaches this point; a no-op in a single process.

    Goes through the coordination service, not a collective: CPU (gloo) collectives give up
    when the processes arrive more than ~30 s apart, e.g. after compiling at different speeds.
    """
    global _barrier_count
    if jax.process_count() == 1:
        return
    _barrier_count += 1
    key = f"jax_codec/{name}/{_barrier_count}"
    from jax._src import distributed as jax_distributed  # the public API has no barrier

    client = jax_distributed.global_state.client
    if client is None:  # e.g. a TPU pod without jax.distributed: a collective barrier
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(key)
        return
    client.wait_at_barrier(key, timeout_in_ms=int(timeout_s * 1000))
