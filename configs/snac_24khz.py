"""The `snac_24khz` preset, defined (with its variants and commands) in `jax_codec/configs/snac_24khz.py`.

  python -m jax_codec.train --config=configs/snac_24khz.py    # the same as --config=snac_24khz
"""

from jax_codec.configs.snac_24khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
