r"""The flagship model (configs/base.py) on Cloud TPU v5e slices: bf16, batch and remat by memory.

Variants (one is required):
  v5e8    a v5e-8 slice: one host, 8 chips (16 GiB HBM each).
  v5e64   a v5e-64 slice: 16 hosts of 4 chips; `train.batch_size` is global (all 64 chips).
Global batch: 128 (16 rows per chip) on v5e8, 512 (8 rows per chip) on v5e64.
Launch (see launch/README.md):
  launch/tpu_pod.sh --accelerator=v5litepod-8 --config=configs/tpu_v5e.py:v5e8 ...
Check the memory first (no TPU needed; compiles for fake CPU devices):
  python -m jax_codec.train --config=configs/tpu_v5e.py:v5e8 --preflight_devices=8 \
      --preflight_memory_gb=16
  python -m jax_codec.train --config=configs/tpu_v5e.py:v5e64 --preflight_devices=64 \
      --preflight_memory_gb=16

The batch and remat were chosen from the preflight memory estimate (`--preflight_devices`);
its numbers are in benchmarks/README.md ("Preflight estimates of the accelerator presets").
"""

import ml_collections

from jax_codec.configs import base, common

VARIANTS = ("v5e8", "v5e64")
CHIPS = {"v5e8": 8, "v5e64": 64}
# Rows of 0.37 s per chip and step, chosen with the preflight estimate.
ROWS_PER_CHIP = {"v5e8": 16, "v5e64": 8}
REMAT = False


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    needs_one = f"configs/tpu_v5e.py needs one variant of {VARIANTS}, e.g. :v5e8"
    try:
        variants = common.parse_arg(arg, v5e8=False, v5e64=False)
    except ValueError as e:
        raise ValueError(f"{needs_one} ({e})") from None
    chosen = [v for v in VARIANTS if variants[v]] or ["v5e8"]  # default: a v5e-8
    if len(chosen) != 1:
        raise ValueError(needs_one)
    (variant,) = chosen
    config = base.get_config()
    config.name = f"tpu_{variant}"
    config.model.dtype = "bfloat16"
    config.model.remat = REMAT
    # Global batch: all chips of all hosts.
    config.train.batch_size = ROWS_PER_CHIP[variant] * CHIPS[variant]
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.mesh.data = -1
    config.mesh.fsdp = 1
    # TPU VM hosts have many cores; each reads only its own rows of every batch.
    config.data.num_threads = 8
    config.data.prefetch = 4
    config.lock()
    return config
