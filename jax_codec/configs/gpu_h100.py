r"""The flagship model (configs/base.py) on one node of 8 NVIDIA H100 (80 GB): bf16, batch 256.

One process drives all 8 GPUs (no jax.distributed needed):
  python -m jax_codec.train --config=configs/gpu_h100.py --workdir=/shared/runs/h100
Several nodes: launch/gpu_slurm.sbatch (one process per GPU; `train.batch_size` is global, so
raise it with the node count, e.g. --config.train.batch_size=512 on 2 nodes).
Check the memory first (no GPU needed; compiles for fake CPU devices):
  python -m jax_codec.train --config=configs/gpu_h100.py --preflight_devices=8 \
      --preflight_memory_gb=80

The batch and remat were chosen from the preflight memory estimate (`--preflight_devices`);
its numbers are in benchmarks/README.md ("Preflight estimates of the accelerator presets").
"""

import ml_collections

from jax_codec.configs import base, common

VARIANTS = ()
GPUS = 8
# Rows of 0.37 s per GPU and step, chosen with the preflight estimate.
ROWS_PER_GPU = 32
REMAT = False


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    try:
        common.parse_arg(arg)
    except ValueError as e:
        raise ValueError(f"configs/gpu_h100.py has no variants (got {arg!r})") from e
    config = base.get_config()
    config.name = "gpu_h100"
    config.model.dtype = "bfloat16"
    config.model.remat = REMAT
    config.train.batch_size = ROWS_PER_GPU * GPUS
    config.train.log_every = 100
    config.train.checkpoint_every = 1000
    config.mesh.data = -1
    config.mesh.fsdp = 1
    # ~300 audio s/s of decoding and augmenting to keep 8 GPUs fed.
    config.data.num_threads = 16
    config.data.prefetch = 8
    config.lock()
    return config
