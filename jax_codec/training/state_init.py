"""The train state's initialisation: compiled for the mesh, or on the host CPU and placed on it
(`train.init_on`), and `create_train_state`, the one call benchmarks and tests use."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from jax_codec.config import ConfigError
from jax_codec.training import sharding as sh
from jax_codec.training.state import TrainState
from jax_codec.training.step import Trainer, _cpu_option_known, init_compiler_options

Array = jax.Array


INIT_PLACES = ("auto", "device", "host")


def init_place(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> str:
    """Where the state is initialised (`train.init_on`): "device" (compiled for the mesh) or
    "host" (compiled for this process's CPU, then copied to the mesh). "auto": "host" on an
    accelerator, where compiling the init's thousands of random-number ops takes a minute
    (benchmarks/README.md, "First run on a GPU") for a program that runs once, and "device"
    on CPU, where the two are the same machine."""
    place = str(config.train.get("init_on", "auto"))
    if place not in INIT_PLACES:
        raise ConfigError(f"train.init_on={place!r}; use one of {', '.join(INIT_PLACES)}")
    if place == "auto":
        on_cpu = all(d.platform == "cpu" for d in mesh.devices.flat)
        return "device" if on_cpu else "host"
    return place


def _host_init(trainer: Trainer, key: Array, *, shardings: Any) -> TrainState:
    """The state computed on this process's CPU (LLVM -O0, as the device init on a CPU mesh),
    then placed in `shardings`: each device gets its slice, so it works for any mesh and for
    several processes (every process computes the same state from the same key)."""
    cpu = jax.local_devices(backend="cpu")[0]
    options = {}
    if _cpu_option_known("xla_backend_optimization_level", 0):
        options = {"xla_backend_optimization_level": 0}
    init = jax.jit(trainer.init_state, compiler_options=options)
    host = jax.device_get(init(jax.device_put(key, cpu)))

    def place(value, sharding):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(place, host, shardings)


def state_initializer(
    trainer: Trainer, mesh: jax.sharding.Mesh, shardings: Any
) -> Callable[[Array], TrainState]:
    """`key -> state` in `shardings`, initialised where `init_place` says: the jitted init
    compiled for the mesh, or the host init placed on it."""
    if init_place(trainer.config, mesh) == "host":
        return functools.partial(_host_init, trainer, shardings=shardings)
    return jax.jit(
        trainer.init_state, out_shardings=shardings, compiler_options=init_compiler_options(mesh)
    )


def create_train_state(
    trainer: Trainer, mesh: jax.sharding.Mesh, key: Array, timings: dict | None = None
) -> tuple[TrainState, Any]:
    """Initialise the state in its sharding: compiled for the mesh (no host copy, no replicated
    detour), or on the host CPU and then placed (`init_place`, `train.init_on`).

    `timings`, if given, receives the seconds of each phase (`trace`: shapes and shardings,
    `lower`, `compile`, `run`: until the state is ready; a host init has `trace` and `host`),
    for benchmarks of a cold start."""
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        if timings is not None:
            now = time.perf_counter()
            timings[name], clock = now - clock, now

    abstract = jax.eval_shape(trainer.init_state, key)
    shardings = sh.state_shardings(abstract, mesh)
    init = state_initializer(trainer, mesh, shardings)
    if init_place(trainer.config, mesh) == "host":
        lap("trace")
        state = jax.block_until_ready(init(key))
        lap("host")
        return state, shardings
    if timings is None:
        return init(key), shardings
    lap("trace")
    lowered = init.lower(key)
    lap("lower")
    compiled = lowered.compile()
    lap("compile")
    state = jax.block_until_ready(compiled(key))
    lap("run")
    return state, shardings
