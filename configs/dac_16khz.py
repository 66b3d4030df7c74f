"""The `dac_16khz` preset, defined (with its variants and commands) in `jax_codec/configs/dac_16khz.py`.

  python -m jax_codec.train --config=configs/dac_16khz.py    # the same as --config=dac_16khz
"""

from jax_codec.configs.dac_16khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
