"""The `tpu_v5e` preset, defined (with its variants and commands) in `jax_codec/configs/tpu_v5e.py`.

  python -m jax_codec.train --config=configs/tpu_v5e.py    # the same as --config=tpu_v5e
"""

from jax_codec.configs.tpu_v5e import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
