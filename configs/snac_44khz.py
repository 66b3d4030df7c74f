"""The `snac_44khz` preset, defined (with its variants and commands) in `jax_codec/configs/snac_44khz.py`.

  python -m jax_codec.train --config=configs/snac_44khz.py    # the same as --config=snac_44khz
"""

from jax_codec.configs.snac_44khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
