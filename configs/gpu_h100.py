r"""The flagship model (configs/base.py) on one node of 8 NVIDIA H100 (80 GB): bf16, batch 256.

One process drives all 8 GPUs (no jax.distributed needed):
  python -m jax_codec.train --config=configs/gpu_h100.py --workdir=/shared/runs/h100
Several nodes: launch/gpu_slurm.sbatch (one process per GPU; `train.batch_size` is global, so
raise it with the node count, e.g. --config.train.batch_size=512 on 2 nodes).
Check the memory first (no GPU needed; compiles for fake CPU devices):
  python -m jax_codec.train --config=configs/gpu_h100.py --preflight_devices=8 \
      --preflight_memory_gb=80

Memory estimate that chose the batch and remat: `--preflight_devices=8`, i.e. XLA's CPU
compiler on fake CPU devices, not a GPU measurement. Per GPU, bf16, 32 rows (this config):
train state 0.78 GiB (replicated), temporaries 14.78 GiB, total 15.56 GiB = 19% of 80 GiB;
9.89 TFLOP per GPU and step (79.1 TFLOP over 8), 832 GFLOP per audio second. Remat stays off:
at 8 rows per device it saved only 0.07 of 5.25 GiB for 3% more FLOPs (configs/tpu_v5e.py),
since the discriminators and the losses hold most activations. At ~0.43 GiB per row a GPU
would take ~128 rows (~57 GiB); 32 keeps the global batch (256) a few times DAC's 72, where
GAN training is known to work. Raise train.batch_size for throughput once that is confirmed.
"""

import importlib.util
import os

GPUS = 8
# Rows of 0.37 s per GPU and step, chosen with the estimate above.
ROWS_PER_GPU = 32
REMAT = False


def _base_config():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py")
    spec = importlib.util.spec_from_file_location("_jax_codec_configs_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg: str | None = None):
    if arg:
        raise ValueError(f"configs/gpu_h100.py has no variants (got {arg!r})")
    config = _base_config()
    with config.unlocked():
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
