r"""Ahead-of-time check of a run: compile the train step for the mesh, report memory and FLOPs.

  python -m jax_codec.train --config=configs/tpu_v5e.py:v5e64 --preflight \
      --preflight_devices=64 --preflight_memory_gb=16

The step is lowered from abstract inputs (`jax.ShapeDtypeStruct`s carrying the state and batch
shardings, so no parameter is initialised and no data is read) and compiled by XLA for the
configured mesh. Printed: the mesh and batch, parameter and state sizes, XLA's memory analysis
of one device's program (arguments, outputs, temporaries, generated code; their total against
the device memory or `--preflight_memory_gb`) and its cost analysis (FLOPs per step and per
second of training audio).

Without the real hardware, `--preflight_devices=N` compiles for N fake CPU devices (the same as
`XLA_FLAGS=--xla_force_host_platform_device_count=N` with `JAX_PLATFORMS=cpu`). Such numbers
come from the CPU compiler: the same shardings and shapes, but different fusion, layouts and
(TPU) tile padding; treat them as an estimate, within tens of percent, not a guarantee.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_codec.models.codec import resolve_dtype
from jax_codec.training import sharding as sh
from jax_codec.training.step import Trainer, compile_train_step

GiB = 2**30


@dataclasses.dataclass
class Report:
    """What `run` measured; sizes in bytes per device, FLOPs per step."""

    devices: int
    platform: str
    device_kind: str
    mesh_shape: dict
    batch: int
    segment: int
    sample_rate: int
    dtype: str
    remat: bool
    gen_params: int
    disc_params: int
    state_bytes: int
    lower_s: float
    compile_s: float
    argument: int | None
    output: int | None
    alias: int | None
    temp: int | None
    generated_code: int | None
    flops_per_device: float | None
    budget: int | None
    budget_source: str

    @property
    def total(self) -> int | None:
        """Peak estimate: live arguments + outputs not aliased to them + temporaries + code."""
        if self.argument is None:
            return None
        return self.argument + self.output - self.alias + self.temp + self.generated_code

    @property
    def audio_seconds(self) -> float:
        return self.batch * self.segment / self.sample_rate

    @property
    def flops(self) -> float | None:
        """FLOPs of one step over all devices (XLA counts those of one device's program)."""
        return None if self.flops_per_device is None else self.flops_per_device * self.devices

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.total is not None and self.total > self.budget

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(total=self.total, flops=self.flops, audio_seconds=self.audio_seconds)
        return d


def _abstract(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
    )


def _memory(compiled) -> dict:
    try:  # not implemented on every backend
        m = compiled.memory_analysis()
    except Exception:
        m = None
    keys = ("argument", "output", "alias", "temp", "generated_code")
    if m is None:
        return dict.fromkeys(keys)
    return {k: int(getattr(m, f"{k}_size_in_bytes")) for k in keys}


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per device
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def device_memory_bytes() -> int | None:
    """The memory of one local accelerator, if the runtime reports it (not on CPU)."""
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None


def run(config: ml_collections.ConfigDict, memory_gb: float | None = None) -> Report:
    """Lower and compile the train step of `config` for the current devices; measure it."""
    from jax_codec.training.loop import validate_run

    mesh = sh.make_mesh(config.mesh)
    validate_run(config, mesh)
    trainer = Trainer(config)
    key = jax.random.key(int(config.train.seed))
    abstract = jax.eval_shape(trainer.init_state, key)
    shardings = sh.state_shardings(abstract, mesh)
    state = _abstract(abstract, shardings)
    batch = jax.ShapeDtypeStruct(
        trainer.batch_shape(int(config.train.batch_size)),
        jnp.float32,
        sharding=sh.batch_sharding(mesh),
    )
    step_key = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=sh.replicated(mesh))
    step = compile_train_step(trainer, mesh, shardings)
    t0 = time.perf_counter()
    lowered = step.lower(state, batch, step_key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()

    def size(tree: Any) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))

    def per_device_bytes(x: jax.ShapeDtypeStruct) -> int:
        shard = x.sharding.shard_shape(x.shape)
        return int(np.prod(shard, dtype=np.int64)) * x.dtype.itemsize

    if memory_gb is not None:
        budget, source = int(memory_gb * GiB), "--preflight_memory_gb"
    else:
        budget = device_memory_bytes()
        source = "device memory" if budget is not None else ""
    device = jax.devices()[0]
    return Report(
        devices=mesh.size,
        platform=device.platform,
        device_kind=device.device_kind,
        mesh_shape=dict(mesh.shape),
        batch=int(config.train.batch_size),
        segment=trainer.segment,
        sample_rate=trainer.codec.sample_rate,
        dtype=jnp.dtype(resolve_dtype(config.model.dtype)).name,
        remat=bool(config.model.get("remat", False)),
        gen_params=size(abstract.gen_params),
        disc_params=size(abstract.disc_params),
        state_bytes=sum(per_device_bytes(x) for x in jax.tree.leaves(state)),
        lower_s=t1 - t0,
        compile_s=t2 - t1,
        **_memory(compiled),
        flops_per_device=_flops(compiled),
        budget=budget,
        budget_source=source,
    )


def format_report(r: Report, config_name: str, simulated: bool) -> str:
    gib = lambda b: "n/a" if b is None else f"{b / GiB:.2f} GiB"  # noqa: E731
    tflop = lambda f: "n/a" if f is None else f"{f / 1e12:.3g} TFLOP"  # noqa: E731
    mesh = " x ".join(f"{k}={v}" for k, v in r.mesh_shape.items())
    where = f"{r.devices} {r.platform} devices ({r.device_kind})"
    if simulated:
        where += ", fake CPU devices: a CPU-compiler estimate of the real mesh"
    lines = [
        f"preflight {config_name}: mesh {mesh} over {where}",
        f"  batch {r.batch} x {r.segment} samples ({r.audio_seconds:.3g} audio s per step, "
        f"{r.batch // r.devices} rows per device), compute dtype {r.dtype}, "
        f"remat {'on' if r.remat else 'off'}",
        f"  params: generator {r.gen_params / 1e6:.2f}M, discriminators "
        f"{r.disc_params / 1e6:.2f}M; train state {gib(r.state_bytes)} per device",
        f"  lower {r.lower_s:.1f} s, compile {r.compile_s:.1f} s",
    ]
    if r.total is None:
        lines.append("  memory per device: not reported by this backend")
    else:
        share = ""
        if r.budget is not None:
            share = f" of {gib(r.budget)} ({r.budget_source}), {100 * r.total / r.budget:.0f}%"
        lines.append(
            f"  memory per device: arguments {gib(r.argument)}, outputs {gib(r.output)} "
            f"({gib(r.alias)} aliased to donated arguments), temporaries {gib(r.temp)}, "
            f"generated code {gib(r.generated_code)}; total {gib(r.total)}{share}"
        )
    if r.flops is None:
        lines.append("  FLOPs: not reported by this backend")
    else:
        lines.append(
            f"  FLOPs per step: {tflop(r.flops)} ({tflop(r.flops_per_device)} per device); "
            f"{r.flops / r.audio_seconds / 1e9:.4g} GFLOP per audio second"
        )
    if r.platform == "cpu" and r.dtype == "float32":
        lines.append(
            "  note: model.dtype resolves to float32 on CPU; GPU/TPU runs of model.dtype=auto "
            "compute in bfloat16 (set --config.model.dtype=bfloat16 to estimate that)"
        )
    if r.over_budget:
        lines.append(
            f"WARNING: the estimated {gib(r.total)} per device exceeds the "
            f"{gib(r.budget)} {r.budget_source}: expect an out-of-memory error. Lower "
            "train.batch_size, set model.remat=True, or use more devices (mesh.fsdp > 1 "
            "splits the parameters and optimizer state)."
        )
    return "\n".join(lines)
