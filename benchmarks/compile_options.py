r"""XLA:CPU's LLVM optimisation level for the state init and the train step: compile time against
step time, back to back in one process.

  python benchmarks/compile_options.py --config=configs/base.py:runlocal

For the init (`Trainer.init_state`, run once per training run) and the train step, each built
with the options the training loop uses and with LLVM at -O0 (`xla_backend_optimization_level=0`
added): compile seconds, the init's largest difference between the two builds, and the step's
minimum time over `--repeats` rounds of `--steps` calls, alternating the two builds so that a
change in the machine's load hits both. Decides `jax_codec.training.step.init_compiler_options`
(the init compiles at -O0) and why the train step does not, and why the tests run at -O0
(tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jax_codec.config import load_config  # noqa: E402
from jax_codec.data.synthetic import SyntheticMusic  # noqa: E402
from jax_codec.training.sharding import make_mesh  # noqa: E402
from jax_codec.training.step import Trainer, training_compiler_options  # noqa: E402

O0 = {"xla_backend_optimization_level": 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/base.py:runlocal")
    p.add_argument("--steps", type=int, default=5, help="timed calls per round")
    p.add_argument("--repeats", type=int, default=3, help="rounds, alternating the builds")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    jax.config.update("jax_compilation_cache_dir", None)  # measure real compiles

    config = load_config(args.config)
    trainer = Trainer(config)
    mesh = make_mesh(config.mesh, jax.devices()[:1])
    key = jax.random.key(0)
    train_opts = training_compiler_options(mesh)
    result = {"config": args.config, "init": {}, "step": {}}

    lowered = jax.jit(trainer.init_state).lower(key)
    states = {}
    for name, opts in (("default", {}), ("O0", O0)):
        t0 = time.perf_counter()
        compiled = lowered.compile(compiler_options=opts)
        result["init"][f"compile_s_{name}"] = time.perf_counter() - t0
        states[name] = jax.device_get(compiled(key))
    result["init"]["max_abs_diff"] = max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in zip(jax.tree.leaves(states["default"]), jax.tree.leaves(states["O0"]))
        if np.asarray(a).size and np.issubdtype(np.asarray(a).dtype, np.floating)
    )

    state = jax.device_put(states["default"])
    seconds = trainer.segment / trainer.codec.sample_rate
    src = SyntheticMusic(trainer.codec.sample_rate, seconds, seed=0)
    rows = [src[i][: trainer.segment] for i in range(config.train.batch_size)]
    batch = jnp.asarray(np.stack(rows))
    lowered = jax.jit(trainer.train_step).lower(state, batch, key)
    steps = {}
    for name, opts in (("default", train_opts), ("O0", {**train_opts, **O0})):
        t0 = time.perf_counter()
        steps[name] = lowered.compile(compiler_options=opts)
        result["step"][f"compile_s_{name}"] = time.perf_counter() - t0
        jax.block_until_ready(steps[name](state, batch, key))
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, fn in steps.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(state, batch, key))
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        result["step"][f"min_s_{name}"] = min(ts)
    result["init"]["compile_ratio"] = (
        result["init"]["compile_s_O0"] / result["init"]["compile_s_default"]
    )
    result["step"]["compile_ratio"] = (
        result["step"]["compile_s_O0"] / result["step"]["compile_s_default"]
    )
    result["step"]["step_ratio"] = result["step"]["min_s_O0"] / result["step"]["min_s_default"]
    result["load_average"] = os.getloadavg()
    if args.json:
        print(json.dumps(result))
        return
    for part in ("init", "step"):
        print(
            part, {k: round(v, 3) if isinstance(v, float) else v for k, v in result[part].items()}
        )
    print("load average", result["load_average"])


if __name__ == "__main__":
    main()
