r"""Descript Audio Codec (DAC) 24 kHz (the "24khz" release, 32 codebooks at 75 Hz = 24 kbps).

Its exact architecture, to import its weights:
  python -m jax_codec convert --from dac --weights weights_24khz.pth \
      --config configs/dac_24khz.py --output runs/dac_24khz_converted
  python -m jax_codec.train --config=configs/dac_24khz.py --init_from=runs/dac_24khz_converted
Variants: runlocal, tiny (as in configs/dac_44khz.py).
The model is DAC's release conf/final/24khz.yml: `dac.DAC(encoder_dim=64,
encoder_rates=[2, 4, 5, 8], decoder_dim=1536, decoder_rates=[8, 5, 4, 2], n_codebooks=32,
codebook_size=1024, codebook_dim=8, sample_rate=24000)`, hop 320. Its stride-5 transposed conv
drops one sample, so DAC decodes F frames to 320 F - 8 samples; we return those and 8 zeros.
"""

import ml_collections

from jax_codec.configs import common
from jax_codec.configs.dac_44khz import dac_config

VARIANTS = ("runlocal", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, runlocal=False, tiny=False)
    config = dac_config(
        24000, (2, 4, 5, 8), (8, 5, 4, 2), 32, runlocal=variants.runlocal, tiny=variants.tiny
    )
    config.name = common.config_name("dac_24khz", arg)
    config.lock()
    return config
