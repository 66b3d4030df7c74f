r"""Descript Audio Codec (DAC) 44.1 kHz, 8 kbps: its exact architecture, to import its weights.

Convert the released checkpoint, then run or fine-tune it (see README, "Pretrained weights"):
  python -m jax_codec.convert --from dac --checkpoint weights.pth \
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

import importlib.util
import os

VARIANTS = ("16kbps", "runlocal", "tiny")


def _load(name: str):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    spec = importlib.util.spec_from_file_location(f"_jax_codec_configs_{name[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dac_config(
    name: str,
    sample_rate: int,
    encoder_rates: tuple,
    decoder_rates: tuple,
    n_codebooks: int,
    arg: str | None,
    latent_dim: int | None = None,
    allowed: tuple = ("runlocal", "tiny"),
):
    """A full training config whose model is `dac.DAC(...)` with these hyperparameters."""
    variants = [v for v in (arg or "").split(",") if v]
    for v in variants:
        if v not in allowed:
            raise ValueError(f"unknown variant {v!r} of configs/{name}.py; choose from {allowed}")
    encoder_dim, decoder_dim = 64, 1536
    if "tiny" in variants:
        encoder_dim, decoder_dim = 4, 64
    if latent_dim is None:  # DAC's default: encoder_dim * 2 ** len(encoder_rates)
        latent_dim = encoder_dim * 2 ** len(encoder_rates)

    config = _load("base.py").get_config()
    with config.unlocked():
        config.name = name + "".join(f"_{v}" for v in variants)
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
        # Architecture options (jax_codec.models.codec.Codec documents each).
        m.arch = "dac"
        m.quantizer = "factorized"
        m.pad_mode = "zeros"
        m.lstm_layers = 0
        m.residual_compress = 2
        m.true_skip = False
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

        if "runlocal" in variants:
            d.periods = (2, 3, 5)
            d.mrd_window_lengths = (1024, 512)
            d.channels = 8
            loss.mel_window_lengths = (64, 256, 1024)
            loss.mel_n_mels = (10, 40, 160)
            config.optim.warmup_steps = 10
            t.num_steps = 100
            t.batch_size = 1
            t.segment_seconds = 0.05
            t.log_every = 1
            t.eval_every = 50
            t.checkpoint_every = 50
            config.data.prefetch = 2
    config.lock()
    return config


def get_config(arg: str | None = None):
    variants = [v for v in (arg or "").split(",") if v]
    if "16kbps" in variants:
        rest = ",".join(v for v in variants if v != "16kbps")
        config = dac_config(
            "dac_44khz_16kbps",
            44100,
            (2, 4, 8, 8),
            (8, 8, 4, 2),
            18,
            rest,
            latent_dim=128,  # conf/final/44khz-16kbps.yml
        )
        return config
    return dac_config("dac_44khz", 44100, (2, 4, 8, 8), (8, 8, 4, 2), 9, arg, allowed=VARIANTS)
