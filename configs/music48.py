"""The `music48` preset, defined (with its variants and commands) in `jax_codec/configs/music48.py`.

python -m jax_codec.train --config=configs/music48.py    # the same as --config=music48
"""

from jax_codec.configs.music48 import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
