"""The `dac_44khz` preset, defined (with its variants and commands) in `jax_codec/configs/dac_44khz.py`.

  python -m jax_codec.train --config=configs/dac_44khz.py    # the same as --config=dac_44khz
"""

from jax_codec.configs.dac_44khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
