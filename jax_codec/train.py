r"""Train a codec: `python -m jax_codec train --config=configs/base.py [--workdir=DIR]`.

Example: `python -m jax_codec train --config=configs/base.py:runlocal --workdir=runs/try
--config.train.num_steps=200` (alias: `python -m jax_codec.train ...`).

Override any config field from the command line, e.g. `--config.train.batch_size=8`.
Without `--workdir` the run writes to `runs/<config name>`; rerunning resumes it.

Multi-host (see launch/README.md): run the same command on every host. Under SLURM (`srun`),
Open MPI and on Cloud TPU VM slices the processes find each other by themselves; elsewhere give
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (I = 0 ... N-1, process 0
on HOST). `train.batch_size` is the global batch over all devices of all hosts.

Preflight: `--preflight` compiles the train step for the configured mesh, prints memory per
device and FLOPs per step, and exits without training; `--preflight_devices=N` does it for N
fake CPU devices (a mesh you do not have), `--preflight_memory_gb` sets the memory to check
against (default: the device's, when the runtime reports it).
"""

from __future__ import annotations

import os

from absl import app, flags

from jax_codec.cli_errors import FAILURE, fail
from jax_codec.config import define_config_flag

_CONFIG = define_config_flag(
    "config", "Config: a preset such as base[:runlocal], or a file such as configs/base.py."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (default: runs/<config name>); gs://... works on TPU pods."
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: HOST:PORT of process 0 (not needed under SLURM, Open MPI or on Cloud TPU).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-host: total number of processes (1 disables auto-detection)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-host: this process's id, 0 ... num_processes - 1."
)
_LOCAL_DEVICE_IDS = flags.DEFINE_string(
    "local_device_ids", None, "Multi-host: this process's devices, e.g. 0,1 (default: all)."
)
_PREFLIGHT = flags.DEFINE_bool(
    "preflight", False, "Compile the train step, print memory and FLOPs, exit without training."
)
_PREFLIGHT_DEVICES = flags.DEFINE_integer(
    "preflight_devices", None, "Preflight on this many fake CPU devices (implies --preflight)."
)
_INIT_FROM = flags.DEFINE_string(
    "init_from",
    None,
    "Start a new run from this checkpoint's generator weights (e.g. one written by "
    "`python -m jax_codec convert`), with fresh discriminators; ignored when resuming.",
)
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.path.join("~", ".cache", "jax_codec", "xla"),
    "Persistent XLA compilation cache directory ('' disables it): a restarted or resumed run "
    "loads the compiled train step instead of compiling it again. $JAX_COMPILATION_CACHE_DIR, "
    "when set, takes precedence.",
)
_PREFLIGHT_MEMORY_GB = flags.DEFINE_float(
    "preflight_memory_gb",
    None,
    "Preflight: device memory (GiB) to check against (default: the device's, when known).",
)


def enable_compilation_cache(jax, path: str) -> str | None:
    """Point JAX's persistent compilation cache at `path` (unless $JAX_COMPILATION_CACHE_DIR
    or an earlier setting chose one); returns the directory in use, or None when disabled.

    The base train step takes about a minute to compile on a CPU; with the cache, the second
    start of the same config (a resume, a restart after a crash) loads it in seconds.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    if not path:
        return None
    if "://" not in path:
        path = os.path.abspath(os.path.expanduser(path))
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    from absl import logging

    # Orbax logs every save step at INFO; keep the terminal for the progress bar.
    logging.set_verbosity(logging.WARNING)
    import jax

    from jax_codec.training import distributed

    preflight = _PREFLIGHT.value or _PREFLIGHT_DEVICES.value is not None
    enable_compilation_cache(jax, _COMPILATION_CACHE.value)
    try:
        # Before anything touches a device: which devices exist is decided here.
        if _PREFLIGHT_DEVICES.value is not None:
            if _PREFLIGHT_DEVICES.value < 1:
                raise distributed.DistributedError(
                    f"--preflight_devices={_PREFLIGHT_DEVICES.value} must be >= 1"
                )
            if _NUM_PROCESSES.value not in (None, 1):
                raise distributed.DistributedError(
                    "--preflight_devices simulates the whole mesh in one process; "
                    "leave out --num_processes"
                )
            jax.config.update("jax_platforms", "cpu")
            jax.config.update("jax_num_cpu_devices", _PREFLIGHT_DEVICES.value)
        else:
            distributed.maybe_initialize(
                _COORDINATOR.value,
                _NUM_PROCESSES.value,
                _PROCESS_ID.value,
                _LOCAL_DEVICE_IDS.value,
            )
    except distributed.DistributedError as e:
        fail(e, FAILURE)

    from jax_codec.config import ConfigError, validate_config
    from jax_codec.data.pipeline import DataError
    from jax_codec.training.checkpoints import CheckpointMismatchError

    config = _CONFIG.value
    if config is None:
        fail("--config is required, e.g. --config=configs/base.py", FAILURE)
    try:
        validate_config(config)
        if preflight:
            from jax_codec.training import preflight as pf

            report = pf.run(config, _PREFLIGHT_MEMORY_GB.value)
            name = config.get("name", "run")
            if jax.process_index() == 0:
                print(pf.format_report(report, name, _PREFLIGHT_DEVICES.value is not None))
            return
        from jax_codec.training.loop import train_and_evaluate

        workdir = _WORKDIR.value or os.path.join("runs", config.get("name", "run"))
        from jax_codec.inference.api import latest_finished_step

        resuming = latest_finished_step(os.path.join(workdir, "checkpoints")) is not None
        if _INIT_FROM.value and not resuming:  # fail before compiling anything
            from jax_codec.convert.finetune import check_init_from

            check_init_from(_INIT_FROM.value, config)
        train_and_evaluate(config, workdir, init_from=_INIT_FROM.value)
    except (ConfigError, CheckpointMismatchError, DataError) as e:
        fail(e, FAILURE)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with one-line errors (exit 2): a bad flag, an unknown config key in
    `--config.KEY=VALUE`, or a value of the wrong type."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (see --help)", 2)
    except (AttributeError, KeyError) as e:  # ml_collections: an override of a missing field
        key = str(e).strip("'\"")
        arg = next((a for a in argv if a.startswith("--config.") and key in a), key)
        fail(
            f"unknown config key {key!r} in {arg}; "
            "`python -m jax_codec info --config=... --json` lists the fields",
            2,
        )
    except (TypeError, ValueError) as e:
        fail(f"bad --config override: {e}", 2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
