"""The `dac_24khz` preset, defined (with its variants and commands) in `jax_codec/configs/dac_24khz.py`.

  python -m jax_codec.train --config=configs/dac_24khz.py    # the same as --config=dac_24khz
"""

from jax_codec.configs.dac_24khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
