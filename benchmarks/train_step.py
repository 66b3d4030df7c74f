r"""Time the compiled train step of a config: compile, step time, throughput, memory, FLOP/s.

  python benchmarks/train_step.py --config=configs/base.py:runlocal --steps=10
  python benchmarks/train_step.py --config=configs/base.py --steps=3 --batch_size=2 --json

The step is built as `jax_codec.training.loop` builds it (mesh, sharded state, jitted step with
the state donated) and fed one fixed `[batch, segment]` batch of `SyntheticMusic`. Reported:
lower and compile time, the first call, median/min of `--steps` calls after 2 warmup calls,
steps/s, audio seconds per second, peak RSS, XLA's memory and cost analysis, and the effective
GFLOP/s as a ratio to a 2048^3 fp32 matmul timed the same way in this process (DESIGN.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.config import apply_overrides, load_config
from jax_codec.data.pipeline import make_global_batch
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.training import sharding as sh
from jax_codec.training.loop import validate_run
from jax_codec.training.state_init import create_train_state
from jax_codec.training.step import Trainer, compile_train_step

WARMUP = 2
MATMUL_N = 2048


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(fn):
    """(fn(), seconds it took)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def flops_of(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per device
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def memory_of(compiled) -> dict | None:
    try:  # not implemented on every backend
        m = compiled.memory_analysis()
    except Exception:
        return None
    keys = ("argument", "output", "alias", "temp", "generated_code")
    return (
        None if m is None else {f"{k}_mib": getattr(m, f"{k}_size_in_bytes") / 2**20 for k in keys}
    )


def time_calls(call, steps: int) -> list[float]:
    """Seconds per call of `call()` (which must block) for `steps` calls after WARMUP calls."""
    for _ in range(WARMUP):
        call()
    return [timed(call)[1] for _ in range(steps)]


def matmul_reference(steps: int) -> dict:
    """fp32 `[N, N] @ [N, N]`, jitted and timed like the step: this machine's GFLOP/s right now."""
    a = jax.random.normal(jax.random.key(1), (MATMUL_N, MATMUL_N), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (MATMUL_N, MATMUL_N), jnp.float32)
    compiled = jax.jit(jnp.matmul).lower(a, b).compile()
    flops = 2.0 * MATMUL_N**3
    times = time_calls(lambda: compiled(a, b).block_until_ready(), steps)
    med = statistics.median(times)
    return {
        "shape": f"{MATMUL_N}x{MATMUL_N} @ {MATMUL_N}x{MATMUL_N} fp32",
        "gflop": flops / 1e9,
        "xla_gflop": (flops_of(compiled) or 0.0) / 1e9,  # sanity check of cost_analysis
        "median_ms": med * 1e3,
        "min_ms": min(times) * 1e3,
        "gflops_per_s": flops / med / 1e9,
        "gflops_per_s_best": flops / min(times) / 1e9,
    }


def run(args: argparse.Namespace) -> dict:
    config = load_config(args.config)
    overrides = {
        "train.batch_size": args.batch_size,
        "train.segment_seconds": args.segment_seconds,
        "model.dtype": args.dtype,
    }
    apply_overrides(config, {k: str(v) for k, v in overrides.items() if v is not None})
    return {"command": "python " + shlex.join(sys.argv), **measure(config, args.steps, args.config)}


def synthetic_batch(sample_rate: int, segment: int, batch_size: int, seed: int) -> np.ndarray:
    """The benchmark's batch `[batch_size, segment]`: the first `SyntheticMusic` excerpts."""
    source = SyntheticMusic(sample_rate, segment_seconds=segment / sample_rate, seed=seed)
    return np.stack([np.asarray(source[i], np.float32)[:segment] for i in range(batch_size)])


def progress(name: str, message: str) -> None:
    """One line on stderr, so a run stopped by a time limit still says how far it got."""
    print(f"[train_step {name}] {message}", file=sys.stderr, flush=True)


def measure(config, steps: int, name: str = "") -> dict:
    """Build, compile and time the train step of `config` (see the module doc)."""
    mesh = sh.make_mesh(config.mesh)
    validate_run(config, mesh)
    trainer = Trainer(config)
    sr, segment, batch_size = trainer.codec.sample_rate, trainer.segment, config.train.batch_size
    init_key, step_key = jax.random.split(jax.random.key(int(config.train.seed)))

    init_phases: dict = {}

    def init():
        state, shardings = create_train_state(trainer, mesh, init_key, timings=init_phases)
        return jax.block_until_ready(state), shardings

    (state, shardings), init_s = timed(init)
    phases = ", ".join(f"{k} {v:.1f}" for k, v in init_phases.items())
    progress(name, f"initialized in {init_s:.1f} s ({phases})")
    n_gen = sum(x.size for x in jax.tree.leaves(state.gen_params))
    n_disc = sum(x.size for x in jax.tree.leaves(state.disc_params))
    rss = {"after_init": peak_rss_mib()}

    local = synthetic_batch(sr, segment, batch_size, int(config.train.seed))
    batch = make_global_batch(local, sh.batch_sharding(mesh))

    step = compile_train_step(trainer, mesh, shardings)
    lowered, lower_s = timed(lambda: step.lower(state, batch, step_key))
    progress(name, f"lowered in {lower_s:.1f} s")
    compiled, compile_s = timed(lowered.compile)
    progress(name, f"compiled in {compile_s:.1f} s")
    rss["after_compile"] = peak_rss_mib()

    def call():  # the state is donated: always carry the new one forward
        nonlocal state
        state, metrics = compiled(state, batch, step_key)
        jax.block_until_ready((state, metrics))

    first_s = timed(call)[1]
    times = time_calls(call, steps)
    med = statistics.median(times)
    rss["end"] = peak_rss_mib()

    flops = flops_of(compiled)
    ref = matmul_reference(max(steps, 5))
    audio_s = batch_size * segment / sr
    gflops = None if flops is None else flops / med / 1e9
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "devices": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
        "cpu_count": os.cpu_count(),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
        "config": config.get("name", name),
        "dtype": str(jnp.dtype(trainer.codec.dtype)),
        "params_gen_m": n_gen / 1e6,
        "params_disc_m": n_disc / 1e6,
        "batch_size": batch_size,
        "segment_samples": segment,
        "audio_seconds_per_step": audio_s,
        "init_s": init_s,
        "init_phases_s": init_phases,
        "lower_s": lower_s,
        "compile_s": compile_s,
        "first_step_s": first_s,
        "steps_timed": steps,
        "step_median_s": med,
        "step_min_s": min(times),
        "steps_per_s": 1.0 / med,
        "audio_s_per_s": audio_s / med,
        "peak_rss_mib": rss,
        "xla_memory": memory_of(compiled),
        "gflop_per_step": None if flops is None else flops / 1e9,
        "gflop_per_audio_s": None if flops is None else flops / 1e9 / audio_s,
        "gflops_per_s": gflops,
        "matmul_ref": ref,
        "fraction_of_matmul": None if gflops is None else gflops / ref["gflops_per_s"],
    }


def print_report(r: dict) -> None:
    f = lambda v, p=3: "n/a" if v is None else f"{v:.{p}f}"
    m, rss = r["matmul_ref"], r["peak_rss_mib"]
    print(
        f"config {r['config']}: batch {r['batch_size']} x {r['segment_samples']} samples "
        f"({r['audio_seconds_per_step']:.3f} audio s/step); params G {r['params_gen_m']:.3f}M, "
        f"D {r['params_disc_m']:.3f}M; {r['devices']}, jax {r['jax']}, {r['date']}"
    )
    print(
        f"init {r['init_s']:.2f} s, lower {r['lower_s']:.2f} s, compile {r['compile_s']:.2f} s, "
        f"first step {r['first_step_s']:.3f} s"
    )
    print(
        f"step ({r['steps_timed']} after {WARMUP} warmup): median {r['step_median_s']:.4f} s, "
        f"min {r['step_min_s']:.4f} s; {r['steps_per_s']:.3f} steps/s, "
        f"{r['audio_s_per_s']:.3f} audio s/s"
    )
    print(
        f"peak RSS: {rss['after_init']:.0f} MiB after init, {rss['after_compile']:.0f} MiB "
        f"after compile, {rss['end']:.0f} MiB at end"
    )
    if r["xla_memory"]:
        print(
            "XLA memory (MiB): "
            + ", ".join(f"{k[:-4]} {v:.1f}" for k, v in r["xla_memory"].items())
        )
    print(
        f"FLOPs: {f(r['gflop_per_step'])} GFLOP/step ({f(r['gflop_per_audio_s'], 1)} per audio "
        f"s), {f(r['gflops_per_s'], 2)} GFLOP/s effective"
    )
    print(
        f"matmul {m['shape']}: median {m['median_ms']:.2f} ms, {m['gflops_per_s']:.1f} GFLOP/s "
        f"(best {m['gflops_per_s_best']:.1f}; XLA counts {m['xla_gflop']:.2f} of {m['gflop']:.2f} "
        f"GFLOP); step / matmul = {f(r['fraction_of_matmul'])}"
    )
    print(f"load average (1 min) at end: {r['loadavg_1min_end']} on {r['cpu_count']} CPUs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/base.py:runlocal", help="path[:variants]")
    p.add_argument("--steps", type=int, default=10, help="timed steps after 2 warmup steps")
    p.add_argument("--batch_size", type=int, help="override train.batch_size")
    p.add_argument("--segment_seconds", type=float, help="override train.segment_seconds")
    p.add_argument("--dtype", help="override model.dtype (auto, float32, bfloat16)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be >= 1")
    # A persistent compilation cache (e.g. the tests') would make the compile time meaningless.
    jax.config.update("jax_enable_compilation_cache", False)
    if not args.json:
        print("$ python " + shlex.join(sys.argv), flush=True)
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
