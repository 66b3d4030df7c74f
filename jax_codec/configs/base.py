r"""Flagship jax_codec: 44.1 kHz music, causal (streamable), hierarchical residual VQ, 0.2-5.8 kbps.

Train it (the main command; runs on the built-in synthetic music with no data flag):
  python -m jax_codec.train --config=configs/base.py
Variants, comma separated after a colon (e.g. `configs/base.py:runlocal,noncausal`):
  runlocal   a small model, batch and step count for a CPU.
  noncausal  centred (DAC-style) padding: offline only, cannot stream.
Inspect it:
  python -m jax_codec info --config=configs/base.py:runlocal --json
The fields and their comments are in `jax_codec.configs.common.default_config`.
"""

import ml_collections

from jax_codec.configs import common

VARIANTS = ("runlocal", "noncausal")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, runlocal=False, noncausal=False)
    config = common.default_config()
    config.name = common.config_name("base", arg)
    model, disc, loss = config.model, config.discriminator, config.loss
    optim, train = config.optim, config.train
    if variants.noncausal:
        model.causal = False
    if variants.runlocal:
        model.encoder_width = 8
        model.latent_dim = 64
        model.decoder_width = 96
        model.vq_strides = (4, 2, 1, 1)
        model.codebook_size = 256
        disc.kinds = ("mpd", "mrd")
        disc.periods = (2, 3, 5)
        disc.mrd_window_lengths = (1024, 512)
        disc.channels = 8
        loss.mel_window_lengths = (64, 256, 1024)
        loss.mel_n_mels = (10, 40, 160)
        loss.cqt_weight = 0.0
        optim.learning_rate = 1e-3
        optim.disc_learning_rate = 1e-3
        optim.warmup_steps = 50
        train.num_steps = 2000
        # One crop of 1 s rather than four of 0.2 s (about the same audio per step): an output
        # sample here depends on ~32 frames (0.4 s) of input, so in a 0.2 s crop every output
        # sees the zero padding before the crop, and the model never trains in the state it
        # runs in on long audio (docs/training.md, "Crops longer than the receptive field").
        train.batch_size = 1
        train.segment_seconds = 1.0
        train.log_every = 10
        train.eval_every = 200
        train.checkpoint_every = 200
    config.lock()
    return config
