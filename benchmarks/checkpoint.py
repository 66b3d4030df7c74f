r"""Train-state save time: our Orbax handlers against Orbax's defaults, back to back.

  python benchmarks/checkpoint.py --config=configs/base.py:runlocal --devices=8 [--json]

Builds the config's full train state (generator, discriminators, optimizer states) on a
data-parallel mesh of `--devices` fake CPU devices, so every array is replicated, and times
`--saves` synchronous saves of it each way:
- ours: `jax_codec.training.checkpoints.save_pytree` (each array written from one replica
  within a process);
- orbax default: `ocp.StandardCheckpointer` (replica-parallel writes: one compiled slice per
  array and device).
Also counts XLA compiles during each save (`/jax/core/compile/backend_compile_duration`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/base.py:runlocal")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
    )
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    import jax
    import jax.numpy as jnp
    import orbax.checkpoint as ocp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jax_codec.config import load_config
    from jax_codec.training import checkpoints
    from jax_codec.training.step import Trainer

    trainer = Trainer(load_config(args.config))
    abstract = jax.eval_shape(trainer.init_state, jax.random.key(0))
    replicated = NamedSharding(jax.make_mesh((jax.device_count(),), ("data",)), P())
    state = jax.tree.map(
        lambda s: jax.device_put(jnp.zeros(s.shape, s.dtype), replicated), abstract
    )
    leaves = jax.tree.leaves(state)
    nbytes = sum(x.nbytes for x in leaves)

    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    def orbax_default(path, tree):
        with ocp.StandardCheckpointer() as c:
            c.save(path, tree)
            c.wait_until_finished()

    ways = {"ours": checkpoints.save_pytree, "orbax_default": orbax_default}
    results = {name: [] for name in ways}
    jax.monitoring.register_event_duration_secs_listener(listen)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.saves):  # alternate, so load changes hit both alike
            for name, save in ways.items():
                compiles.clear()
                t0 = time.perf_counter()
                save(os.path.join(tmp, f"{name}_{i}"), state)
                results[name].append(
                    {"seconds": time.perf_counter() - t0, "compiles": len(compiles)}
                )
    jax.monitoring.unregister_event_duration_listener(listen)

    out = {
        "config": args.config,
        "devices": jax.device_count(),
        "arrays": len(leaves),
        "megabytes": nbytes / 2**20,
        "saves": results,
    }
    if args.json:
        print(json.dumps(out))
        return
    print(
        f"{args.config}: {len(leaves)} arrays, {nbytes / 2**20:.1f} MiB, {jax.device_count()} devices"
    )
    for name, runs in results.items():
        times = ", ".join(f"{r['seconds']:.2f} s ({r['compiles']} compiles)" for r in runs)
        print(f"  {name:14s} {times}")


if __name__ == "__main__":
    main()
