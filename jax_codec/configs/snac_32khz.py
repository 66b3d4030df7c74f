r"""SNAC 32 kHz (Multi-Scale Neural Audio Codec, music): its exact architecture, to import it.

Convert the released checkpoint (hubertsiuzdak/snac_32khz: `pytorch_model.bin` and, beside it,
`config.json`, which is checked against this preset), then run or fine-tune it:
  python -m jax_codec convert --from snac --weights snac_32khz/pytorch_model.bin \
      --config configs/snac_32khz.py --output runs/snac_32khz_converted
  python -m jax_codec compress song.wav song.jcodec --checkpoint runs/snac_32khz_converted
  python -m jax_codec.train --config=configs/snac_32khz.py --init_from=runs/snac_32khz_converted
Variants (comma separated after a colon):
  runlocal  tiny batch and crops, few steps, small discriminators: fine-tuning on a CPU (the
            model stays SNAC's, so converted weights still fit).
  tiny      a narrow SNAC of the same structure (for tests; converted weights do NOT fit).
The model is `snac.SNAC(sampling_rate=32000, encoder_dim=64, encoder_rates=[2, 3, 8, 8],
decoder_dim=1536, decoder_rates=[8, 8, 3, 2], attn_window_size=32, codebook_size=4096,
codebook_dim=8, vq_strides=[8, 4, 2, 1], noise=True, depthwise=True)` (the release's
config.json; latent_dim 1024): DAC's non-causal Snake codec with depthwise residual convs,
local attention (windows of 32 frames) at the latent rate in encoder and decoder, noise blocks
in the decoder, and a 4-level multi-scale VQ at 10.4 / 20.8 / 41.7 / 83.3 Hz (1.9 kbps).
Inputs are padded to hop * lcm(8, 32) = 12288 samples, as SNAC's `preprocess` does.
Decoding is deterministic (zero noise) unless a "noise" RNG is passed: see `Codec.noise`.
The training recipe is DAC's (configs/dac_44khz.py) with no quantizer dropout (SNAC has none).
`snac_config` below also builds configs/snac_24khz.py and configs/snac_44khz.py.
"""

import ml_collections

from jax_codec.configs import common
from jax_codec.configs.dac_44khz import dac_config

VARIANTS = ("runlocal", "tiny")


def snac_config(
    name: str,
    arg: str | None,
    *,
    sampling_rate: int,
    encoder_dim: int,
    encoder_rates: tuple,
    decoder_dim: int,
    decoder_rates: tuple,
    attn_window_size: int | None,
    vq_strides: tuple,
    codebook_size: int = 4096,
    codebook_dim: int = 8,
    noise: bool = True,
    depthwise: bool = True,
) -> ml_collections.ConfigDict:
    """A full training config whose model is `snac.SNAC(...)` with these hyperparameters, and
    its variants `arg` (runlocal, tiny)."""
    variants = common.parse_arg(arg, runlocal=False, tiny=False)
    if variants.tiny:  # widths must stay multiples of 64 where attention runs
        encoder_dim, decoder_dim = 4, 128
    config = dac_config(
        sampling_rate, encoder_rates, decoder_rates, len(vq_strides), runlocal=variants.runlocal
    )
    config.name = common.config_name(name, arg)
    m = config.model
    m.sample_rate = sampling_rate
    m.causal = False  # SNAC pads symmetrically: offline only
    m.encoder_width = encoder_dim
    m.encoder_strides = tuple(encoder_rates)
    # SNAC's latent_dim default, the only value its architecture accepts.
    m.latent_dim = encoder_dim * 2 ** len(encoder_rates)
    m.decoder_width = decoder_dim
    m.decoder_strides = tuple(decoder_rates)
    m.dilations = (1, 3, 9)
    # Multi-scale VQ: level i pools vq_strides[i] latent frames (coarse to fine).
    m.vq_strides = tuple(vq_strides)
    m.codebook_size = codebook_size
    m.codebook_dim = codebook_dim
    m.quantizer_dropout = 0.0  # SNAC's quantizer has no dropout
    m.arch = "snac"
    m.quantizer = "factorized"
    # torch's ConvTranspose1d(padding=ceil(s / 2), output_padding=s % 2): exactly F * s.
    m.transpose_trim = "exact"
    m.transpose_norm = "in"  # torch's weight_norm on ConvTranspose1d
    m.final_activation = "tanh"
    m.snac.depthwise = depthwise
    m.snac.attn_window = int(attn_window_size or 0)
    m.snac.noise = noise
    # Crops of whole attention blocks (hop * lcm(vq_strides[0], window) samples).
    config.train.segment_seconds = 0.4 if variants.runlocal else 0.8
    # The original takes audio at the level it comes (EnCodec 24 kHz and SNAC normalize
    # nothing), so the imported weights are used the same way.
    config.data.normalize = False
    config.lock()
    return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return snac_config(
        "snac_32khz",
        arg,
        sampling_rate=32000,
        encoder_dim=64,
        encoder_rates=(2, 3, 8, 8),
        decoder_dim=1536,
        decoder_rates=(8, 8, 3, 2),
        attn_window_size=32,
        vq_strides=(8, 4, 2, 1),
    )
