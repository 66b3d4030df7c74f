"""Import pretrained PyTorch codecs (DAC, EnCodec, SNAC) as jax_codec checkpoints.

  python -m jax_codec convert --from dac --weights weights.pth \
      --config configs/dac_44khz.py --output runs/dac_44khz_converted

See `jax_codec.convert.core` for the tensor mapping and its checks.
"""

from jax_codec.convert.core import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    load_checkpoint,
    save_converted,
)

__all__ = [
    "ConversionError",
    "convert_checkpoint",
    "convert_state_dict",
    "load_checkpoint",
    "save_converted",
]
