"""The `encodec_24khz` preset, defined (with its variants and commands) in `jax_codec/configs/encodec_24khz.py`.

  python -m jax_codec.train --config=configs/encodec_24khz.py    # the same as --config=encodec_24khz
"""

from jax_codec.configs.encodec_24khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
