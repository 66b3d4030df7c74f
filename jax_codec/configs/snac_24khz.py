r"""SNAC 24 kHz (Multi-Scale Neural Audio Codec, speech): its exact architecture, to import it.

  python -m jax_codec convert --from snac --weights snac_24khz/pytorch_model.bin \
      --config configs/snac_24khz.py --output runs/snac_24khz_converted
  python -m jax_codec.train --config=configs/snac_24khz.py --init_from=runs/snac_24khz_converted
Variants: runlocal, tiny (as in configs/snac_32khz.py).
The model is hubertsiuzdak/snac_24khz's config.json: `snac.SNAC(sampling_rate=24000,
encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024, decoder_rates=[8, 8, 4, 2],
attn_window_size=None, codebook_size=4096, codebook_dim=8, vq_strides=[4, 2, 1], noise=True,
depthwise=True)`: latent_dim 768, hop 512, no attention, 3 levels at 11.7 / 23.4 / 46.9 Hz
(0.98 kbps), 19.8M parameters. Inputs are padded to hop * 4 = 2048 samples.
"""

import ml_collections

from jax_codec.configs.snac_32khz import snac_config

VARIANTS = ("runlocal", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return snac_config(
        "snac_24khz",
        arg,
        sampling_rate=24000,
        encoder_dim=48,
        encoder_rates=(2, 4, 8, 8),
        decoder_dim=1024,
        decoder_rates=(8, 8, 4, 2),
        attn_window_size=None,
        vq_strides=(4, 2, 1),
    )
