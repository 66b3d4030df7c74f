r"""Descript Audio Codec (DAC) 16 kHz (the "16khz" release, 12 codebooks at 50 Hz = 6 kbps).

Its exact architecture, to import its weights:
  python -m jax_codec convert --from dac --weights weights_16khz.pth \
      --config configs/dac_16khz.py --output runs/dac_16khz_converted
  python -m jax_codec.train --config=configs/dac_16khz.py --init_from=runs/dac_16khz_converted
Variants: runlocal, tiny (as in configs/dac_44khz.py).
The model is DAC's release conf/final/16khz.yml: `dac.DAC(encoder_dim=64,
encoder_rates=[2, 4, 5, 8], decoder_dim=1536, decoder_rates=[8, 5, 4, 2], n_codebooks=12,
codebook_size=1024, codebook_dim=8, sample_rate=16000)`, hop 320. Its stride-5 transposed conv
drops one sample, so DAC decodes F frames to 320 F - 8 samples; we return those and 8 zeros.
"""

import ml_collections

from jax_codec.configs import common
from jax_codec.configs.dac_44khz import dac_config

VARIANTS = ("runlocal", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, runlocal=False, tiny=False)
    config = dac_config(
        16000, (2, 4, 5, 8), (8, 5, 4, 2), 12, runlocal=variants.runlocal, tiny=variants.tiny
    )
    config.name = common.config_name("dac_16khz", arg)
    config.lock()
    return config
