r"""Descript Audio Codec (DAC) 44.1 kHz, 8 kbps: its exact architecture, to import its weights.

Convert the released checkpoint, then run or fine-tune it (see README, "Pretrained weights"):
  python -m jax_codec convert --from dac --weights weights.pth \
      --config configs/dac_44khz.py --output runs/dac_44khz_converted
  python -m jax_codec.train --config=configs/dac_44khz.py --init_from=runs/dac_44khz_converted
Variants (comma separated after a colon):
  16kbps    the 44.1 kHz 16 kbps release (latent_dim 128, 18 codebooks).
  runlocal  tiny batch and crops, few steps, small discriminators: fine-tuning on a CPU (the
            model stays the full DAC, so converted weights still fit).
  tiny      a narrow DAC of the same structure (for tests; converted weights do NOT fit).
The model is DAC's `dac.DAC(encoder_dim=64, encoder_rates=[2, 4, 8, 8], decoder_dim=1536,
decoder_rates=[8, 8, 4, 2], n_codebooks=9, codebook_size=1024, codebook_dim=8)` (release
conf/final/44khz.yml): non-causal, Snake, factorized L2-normalised residual VQ at one frame
rate, tanh output. The training recipe is DAC's conf/base.yml and scripts/train.py (mel 15,
adversarial 1, feature matching 2 summed over layers, commitment 0.25, codebook 1; MPD + multi-band
MRD; AdamW 1e-4, betas (0.8, 0.99), weight decay 0.01, decay 0.999996 per step, no warmup; clipping
1000 (G) and 10 (D); 0.38 s crops): tests/test_dac_recipe.py checks one step term by term
against PyTorch DAC's.
"""

import ml_collections

from jax_codec.configs import common

VARIANTS = ("16kbps", "runlocal", "tiny")


def dac_config(
    sample_rate: int,
    encoder_rates: tuple,
    decoder_rates: tuple,
    n_codebooks: int,
    *,
    runlocal: bool = False,
    tiny: bool = False,
    latent_dim: int | None = None,
) -> ml_collections.ConfigDict:
    """A full training config (unlocked, unnamed) whose model is `dac.DAC(...)` with these
    hyperparameters, and DAC's training recipe. Also builds configs/dac_{16,24}khz.py."""
    encoder_dim, decoder_dim = (4, 64) if tiny else (64, 1536)
    if latent_dim is None:  # DAC's default: encoder_dim * 2 ** len(encoder_rates)
        latent_dim = encoder_dim * 2 ** len(encoder_rates)

    config = common.default_config()
    m = config.model
    m.sample_rate = sample_rate
    m.causal = False  # DAC pads symmetrically: offline only
    m.encoder_width = encoder_dim
    m.encoder_strides = tuple(encoder_rates)
    m.latent_dim = latent_dim
    m.decoder_width = decoder_dim
    m.decoder_strides = tuple(decoder_rates)
    m.dilations = (1, 3, 9)
    m.vq_strides = (1,) * n_codebooks  # plain residual VQ: every codebook at the frame rate
    m.codebook_size = 1024
    m.codebook_dim = 8
    m.quantizer_dropout = 0.5  # DAC's release configs
    m.arch = "dac"
    m.quantizer = "factorized"
    # torch's ConvTranspose1d(padding=ceil(stride / 2)): odd strides lose a sample.
    m.transpose_trim = "symmetric"
    # torch's weight_norm on ConvTranspose1d normalises per input channel.
    m.transpose_norm = "in"
    m.final_activation = "tanh"

    d = config.discriminator
    d.kinds = ("mpd", "mrd")  # DAC: Discriminator.rates = [] (no MSD)
    # DAC's MPD reflect-pads p - T % p samples (a whole extra row when p divides T).
    d.mpd_pad = "dac"

    loss = config.loss
    loss.mel_weight = 15.0
    loss.stft_weight = 0.0
    loss.cqt_weight = 0.0
    loss.onset_weight = 0.0
    loss.adv_weight = 1.0
    loss.fm_weight = 2.0
    loss.commitment_weight = 0.25
    loss.codebook_weight = 1.0
    loss.fm_reduction = "sum"  # GANLoss: L1 of every layer, summed over all discriminators

    o = config.optim
    o.learning_rate = o.disc_learning_rate = 1e-4
    o.b1, o.b2 = 0.8, 0.99
    o.weight_decay = 0.01  # torch.optim.AdamW's default (DAC sets none)
    o.warmup_steps = 0  # ExponentialLR from the first step, no warmup
    o.decay_rate = 0.999996
    o.clip_norm, o.disc_clip_norm = 1000.0, 10.0  # scripts/train.py clip_grad_norm_

    t = config.train
    t.segment_seconds = 0.38
    t.dead_code_threshold = 0.0  # DAC has no dead-code restarts
    if runlocal:
        common.shrink_for_cpu(config, segment_seconds=0.05)
    return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, **{"16kbps": False}, runlocal=False, tiny=False)
    flags = dict(runlocal=variants.runlocal, tiny=variants.tiny)
    if variants["16kbps"]:
        # conf/final/44khz-16kbps.yml
        config = dac_config(44100, (2, 4, 8, 8), (8, 8, 4, 2), 18, latent_dim=128, **flags)
        config.name = common.config_name("dac_44khz_16kbps", arg, skip=("16kbps",))
    else:
        config = dac_config(44100, (2, 4, 8, 8), (8, 8, 4, 2), 9, **flags)
        config.name = common.config_name("dac_44khz", arg)
    config.lock()
    return config
