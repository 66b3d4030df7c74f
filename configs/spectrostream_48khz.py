"""The `spectrostream_48khz` preset, defined (with its variants and commands) in `jax_codec/configs/spectrostream_48khz.py`.

  python -m jax_codec.train --config=configs/spectrostream_48khz.py    # the same as --config=spectrostream_48khz
"""

from jax_codec.configs.spectrostream_48khz import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
