r"""48 kHz stereo flagship: joint stereo (one code stream for the pair), causal, hierarchical RVQ.

The recipe and widths of configs/base.py, at 48 kHz with `model.channels = 2` (mid/side at the
first and last convs, docs/stereo.md), EnCodec's quantizer and codebook update (Euclidean codes
in the latent, moved to the mean of what they code; docs/training.md) and a 640-sample hop:
75 Hz frames, codes at 18.75 / 37.5 / 6 x 75 Hz, 0.19-5.06 kbps for the pair (quantizer
dropout), 53.3 ms algorithmic latency (one coarse block of 4 frames). Streams one stereo pair
in real time on a 2-core CPU in fp32 with 4-frame chunks (`--chunk_ms 53.3`;
benchmarks/README.md, "music48 streaming").

Train it (the built-in synthetic music renders in stereo):
  python -m jax_codec.train --config=configs/music48.py
Variants, after a colon (e.g. `configs/music48.py:runlocal`):
  runlocal   a small model, batch and step count for a CPU (base.py's runlocal at 48 kHz stereo).
Inspect and stream it (chunks of one 4-frame coarse block add no latency over smaller ones):
  python -m jax_codec info --config=configs/music48.py --json
  python -m jax_codec stream song.wav out.wav --config configs/music48.py --random_init \
      --chunk_ms 53.3
  python benchmarks/streaming.py --config=configs/music48.py --chunk_ms=53.3 --batches=
The fields and their comments are in `jax_codec.configs.common.default_config`.
"""

import ml_collections

from jax_codec.configs import base, common

VARIANTS = ("runlocal",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, runlocal=False)
    config = base.get_config("runlocal" if variants.runlocal else None)
    config.name = common.config_name("music48", arg)
    model = config.model
    model.sample_rate = 48000
    model.channels = 2
    model.stereo = "ms"
    # A 10x last stride (hop 640) rather than base's 8x (hop 512 would be 93.75 Hz at 48 kHz):
    # 20% fewer bits per level at about the same compute, and 4 frames of latency stay ~53 ms.
    model.encoder_strides = (2, 4, 8, 10)
    model.decoder_strides = (10, 8, 4, 2)
    # EnCodec's quantizer and codebook update rather than DAC's projected codes: with DAC's,
    # the joint model's added codebooks did not help (4 against 1: mel level, ViSQOL worse);
    # with these they do (benchmarks/README.md, "EnCodec's quantizer, trained on").
    model.quantizer = "plain"
    model.codebook_dim = model.latent_dim  # codes live in the latent (the update needs it)
    config.train.codebook_ema_decay = 0.9
    config.loss.codebook_weight = 0.0  # EnCodec has no codebook loss; the update replaces it
    # Less quantizer dropout (more steps train every level), and a dead-code window long enough
    # to hold 8 uses of a code used at the uniform rate, whatever the batch (a one-crop CPU
    # batch holds too few vectors at the coarse levels for the default 20-step window).
    model.quantizer_dropout = 0.25
    config.train.dead_code_min_hits = 8.0
    # A quarter of the crops get a span 40 dB down (with fades): trained only on
    # level-normalized crops, the model decoded quiet passages with a floor of its own, and a
    # joint model's floor has a side where dual mono's is the same in both channels
    # (docs/stereo.md, "Quiet spans in the crops").
    config.data.augment.gap_prob = 0.25
    config.data.augment.gap_depth_db = -40.0
    config.lock()
    return config
