r"""Flagship jax_codec: 44.1 kHz music, causal (streamable), hierarchical residual VQ, 0.2-5.8 kbps.

Train it (the main command; runs on the built-in synthetic music with no data flag):
  python -m jax_codec.train --config=configs/base.py
Variants, comma separated after a colon (e.g. `configs/base.py:runlocal,noncausal`):
  runlocal   a small model, batch and step count for a CPU.
  noncausal  centred (DAC-style) padding: offline only, cannot stream.
Inspect it:
  python -m jax_codec info --config=configs/base.py:runlocal --json
"""

import ml_collections

VARIANTS = ("runlocal", "noncausal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = [v for v in (arg or "").split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r} of configs/base.py; choose from {VARIANTS}")

    config = ml_collections.ConfigDict()
    # Config name; the default work dir is runs/<name>.
    config.name = "base" + "".join(f"_{v}" for v in variants)

    model = config.model = ml_collections.ConfigDict()
    # Sample rate of the model (Hz); inputs are resampled to it.
    model.sample_rate = 44100
    # Causal convolutions (streamable, same weights offline and streaming) or centred (DAC).
    model.causal = True
    # Channels of the encoder's first conv; doubled after each stride.
    model.encoder_width = 24
    # Encoder downsampling factors; their product is the hop (samples per latent frame).
    model.encoder_strides = (2, 4, 8, 8)
    # Latent dimension between encoder, quantizer and decoder.
    model.latent_dim = 512
    # Channels of the decoder's first conv; halved after each stride.
    model.decoder_width = 512
    # Decoder upsampling factors; product must equal the encoder's.
    model.decoder_strides = (8, 8, 4, 2)
    # Dilations of the three residual units in every encoder/decoder block.
    model.dilations = (1, 3, 9)
    # One entry per codebook (level): its pooling stride in latent frames, coarse to fine.
    # 4 and 2 are the hierarchical levels (21.5 and 43 Hz), then six full-rate (86 Hz) levels.
    model.vq_strides = (4, 2, 1, 1, 1, 1, 1, 1)
    # Codes per codebook (10 bits each).
    model.codebook_size = 1024
    # Dimension of the factorized, L2-normalized code space.
    model.codebook_dim = 8
    # Fraction of training examples that use a random number of levels (one model, all rates).
    model.quantizer_dropout = 0.5
    # Compute dtype of the encoder/decoder; parameters are always float32.
    model.dtype = "float32"

    if "noncausal" in variants:
        model.causal = False
    if "runlocal" in variants:
        model.encoder_width = 8
        model.latent_dim = 64
        model.decoder_width = 96
        model.vq_strides = (4, 2, 1, 1)
        model.codebook_size = 256

    config.lock()
    return config
