"""The `base` preset, defined (with its variants and commands) in `jax_codec/configs/base.py`.

  python -m jax_codec.train --config=configs/base.py    # the same as --config=base
"""

from jax_codec.configs.base import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
