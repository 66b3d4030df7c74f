"""The `gpu_h100` preset, defined (with its variants and commands) in `jax_codec/configs/gpu_h100.py`.

  python -m jax_codec.train --config=configs/gpu_h100.py    # the same as --config=gpu_h100
"""

from jax_codec.configs.gpu_h100 import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
