r"""SNAC 44.1 kHz (Multi-Scale Neural Audio Codec, music): its exact architecture, to import it.

  python -m jax_codec convert --from snac --weights snac_44khz/pytorch_model.bin \
      --config configs/snac_44khz.py --output runs/snac_44khz_converted
  python -m jax_codec.train --config=configs/snac_44khz.py --init_from=runs/snac_44khz_converted
Variants: runlocal, tiny (as in configs/snac_32khz.py).
The model is hubertsiuzdak/snac_44khz's config.json: SNAC 32 kHz's architecture
(encoder_dim 64, encoder_rates [2, 3, 8, 8], decoder_dim 1536, decoder_rates [8, 8, 3, 2],
attn_window_size 32, 4096 x 8 codebooks, vq_strides [8, 4, 2, 1], noise, depthwise) at
sampling_rate 44100: hop 384, 14 / 29 / 57 / 115 Hz levels, 2.6 kbps. Both releases have the
same tensors, so only their config.json (checked when it lies beside the weights) tells them
apart.
"""

import ml_collections

from jax_codec.configs.snac_32khz import snac_config

VARIANTS = ("runlocal", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return snac_config(
        "snac_44khz",
        arg,
        sampling_rate=44100,
        encoder_dim=64,
        encoder_rates=(2, 3, 8, 8),
        decoder_dim=1536,
        decoder_rates=(8, 8, 3, 2),
        attn_window_size=32,
        vq_strides=(8, 4, 2, 1),
    )
