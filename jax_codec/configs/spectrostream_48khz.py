r"""SpectroStream 48 kHz stereo (Google, 2025; the codec of Magenta RealTime): its exact
architecture, to import, stream and fine-tune its weights.

Convert the released weights (the safetensors file `magenta_rt` loads, see
`jax_codec.convert.spectrostream`), then run or fine-tune them:
  python -m jax_codec convert --from spectrostream --weights mrt2_base.safetensors \
      --config configs/spectrostream_48khz.py --output runs/spectrostream_converted
  python -m jax_codec compress song.wav song.jcodec --checkpoint runs/spectrostream_converted
  python -m jax_codec.train --config=configs/spectrostream_48khz.py:runlocal \
      --init_from=runs/spectrostream_converted
Variants (comma separated after a colon):
  runlocal  tiny batch and crops, few steps, small discriminators: fine-tuning on a CPU (the
            model stays SpectroStream's, so converted weights still fit).
  tiny      a narrow SpectroStream of the same structure with 4 codebooks of 32 (for tests;
            converted weights do NOT fit).
The model is `magenta_rt.jax.spectrostream.stft_spectrostream_40ms_generic_48khz_stereo_config()`
(magenta-rt 2.0.3): per channel an STFT (Hann 960, hop 480, FFT 960; 480 bins without Nyquist,
real and imaginary parts as two channels), a causal 2-D conv encoder (7x7 conv to 32 channels,
seven ELU residual blocks striding (time, frequency) by (1,2) (1,2) (1,3) (1,2) (1,2) (2,2) (2,1)
with channel multipliers 2 1 2 1 1 2 1, left and right coded apart with shared weights until the
last block: delayed fusion), a bottleneck block, and 1x1 convs from 5 bins x 256 channels to 256
latent dims; a residual VQ of 64 codebooks of 1024 x 256 (Euclidean, no projection); the mirror
decoder (base depth 64, transposed convs, one latent frame of lookahead) and an inverse STFT.
25 Hz frames (hop 1920): 0.25 kbps per codebook, 16 kbps with all 64.
Latency: a frame's last STFT frame reaches 10 ms into the next frame and the decoder looks one
frame ahead, so a stream of 40 ms chunks emits audio 120 ms after it arrived
(`Codec.latency_samples`); `encode` adds one frame of zeros so the decoder reaches the end.
The training recipe is ours (SpectroStream's own is not released): mel + adversarial + feature
matching, stereo-aware (docs/stereo.md), no quantizer dropout beyond ours.
"""

import ml_collections

from jax_codec.configs import common

VARIANTS = ("runlocal", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, runlocal=False, tiny=False)
    config = common.default_config()
    config.name = common.config_name("spectrostream_48khz", arg)
    m = config.model
    m.sample_rate = 48000
    m.channels = 2
    m.stereo = "lr"  # the STFT sees left and right; fusion is learned (channel_recombo_block)
    m.causal = True
    m.arch = "spectrostream"
    m.encoder_width = 32  # encoder_base_conv_depth
    m.decoder_width = 64  # decoder_base_conv_depth
    # The STFT hop, then the 2-D blocks' time strides (their product is the 1920-sample hop).
    m.encoder_strides = (480, 2, 2)
    m.decoder_strides = (2, 2, 480)
    m.dilations = (1,)  # unused by this architecture
    m.latent_dim = 256  # num_features
    m.vq_strides = (1,) * 64
    m.codebook_size = 1024
    m.codebook_dim = 256  # no projection
    m.quantizer = "euclidean"
    m.final_activation = "none"
    if variants.tiny:
        m.encoder_width, m.decoder_width = 4, 8
        m.latent_dim = m.codebook_dim = 16
        m.vq_strides = (1,) * 4
        m.codebook_size = 32
    # model.spectrostream keeps its defaults (common.default_config): SpectroStream's STFT,
    # 2-D block strides and multipliers, 7x7 end convs, fusion at the 6th block, lookahead 1.

    config.train.segment_seconds = 1.0
    config.loss.cqt_weight = 0.0
    # The original takes audio at the level it comes, so the imported weights are used so.
    config.data.normalize = False
    if variants.runlocal:
        common.shrink_for_cpu(config, segment_seconds=0.16)
    config.lock()
    return config
