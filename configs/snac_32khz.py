"""The `snac_32khz` preset, defined (with its variants and commands) in `jax_codec/configs/snac_32khz.py`.

  python -m jax_codec.train --config=configs/snac_32khz.py    # the same as --config=snac_32khz
"""

from jax_codec.configs.snac_32khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
