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

Memory estimate that chose the batch and remat: `--preflight_devices=8`, i.e. XLA's CPU
compiler on fake CPU devices, not a TPU measurement (TPU layouts pad narrow channels to 128
lanes, so keep headroom). Per chip, bf16, train state 0.78 GiB (10.1M generator + 59.4M
discriminator params with AdamW moments, replicated):
  8 rows, remat off: temporaries 4.47 GiB, total 5.25 GiB; 2.48 TFLOP per chip and step
  8 rows, remat on:  temporaries 4.40 GiB, total 5.18 GiB; 2.55 TFLOP (+3%)
  16 rows, remat off (this config): temporaries 7.90 GiB, total 8.68 GiB = 54% of 16 GiB;
      4.95 TFLOP per chip and step, 832 GFLOP per audio second
Remat of the encoder/decoder blocks saves only ~1.5%: the activations are dominated by the
discriminators (59M params over 16384-sample crops) and the multi-resolution losses, so it
stays off. About 0.43 GiB per extra row: 24 rows (~12 GiB, 75%) would still fit by this
estimate but leaves little room for TPU padding; 32 rows (~15.4 GiB) would not.
v5e64 (`--preflight_devices=64`) needs more per chip at the same rows: 16 rows gave
temporaries 13.31 GiB, total 14.08 GiB = 88% (8.71 TFLOP per chip), because part of the step
grows with the *global* batch on every device (about 6 MiB and 4 GFLOP per global row, see
the note in launch/README.md). So v5e64 uses 8 rows per chip (global batch 512): temporaries
7.15 GiB, total 7.93 GiB = 50% of 16 GiB; 4.36 TFLOP per chip and step, 279 TFLOP in all.
"""

import importlib.util
import os

VARIANTS = ("v5e8", "v5e64")
CHIPS = {"v5e8": 8, "v5e64": 64}
# Rows of 0.37 s per chip and step, chosen with the estimate above.
ROWS_PER_CHIP = {"v5e8": 16, "v5e64": 8}
REMAT = False


def _base_config():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "base.py")
    spec = importlib.util.spec_from_file_location("_jax_codec_configs_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg: str | None = None):
    variants = [v for v in (arg or "").split(",") if v] or ["v5e8"]  # default: a v5e-8
    if len(variants) != 1 or variants[0] not in VARIANTS:
        raise ValueError(f"configs/tpu_v5e.py needs one variant of {VARIANTS}, e.g. :v5e8")
    (variant,) = variants
    config = _base_config()
    with config.unlocked():
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
