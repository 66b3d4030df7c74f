r"""EnCodec 24 kHz (Meta): its exact architecture, to import its weights.

  python -m jax_codec convert --from encodec --weights encodec_24khz-d7cc33bc.th \
      --config configs/encodec_24khz.py --output runs/encodec_24khz_converted
  python -m jax_codec.train --config=configs/encodec_24khz.py \
      --init_from=runs/encodec_24khz_converted
Variants: runlocal (tiny batch and crops for a CPU; the model stays EnCodec's).
The model is `encodec.EncodecModel.encodec_model_24khz()`: causal SEANet (ELU, weight norm,
reflect padding, ratios [8, 5, 4, 2], n_filters 32, one residual block per stride with
compress 2 and a k=1 conv shortcut, a 2-layer LSTM with skip at the bottleneck, no output
activation), dimension 128, and a plain residual VQ of 32 codebooks of 1024 x 128 (Euclidean).
Bandwidths: the first 2 / 4 / 8 / 16 / 32 codebooks give 1.5 / 3 / 6 / 12 / 24 kbps (75 Hz
frames, 10 bits each). Offline only: the LSTM and reflect padding do not stream here.
The training recipe is ours (EnCodec's MS-STFT discriminator and EMA codebooks are not
reproduced): mel + adversarial + feature matching with the gradient balancer, 1 s crops.
"""

import ml_collections

from jax_codec.configs import common

VARIANTS = ("runlocal",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_arg(arg, runlocal=False)
    config = common.default_config()
    config.name = common.config_name("encodec_24khz", arg)
    m = config.model
    m.sample_rate = 24000
    m.causal = True
    m.encoder_width = 32  # n_filters
    m.encoder_strides = (2, 4, 5, 8)  # EnCodec's ratios, reversed for the encoder
    m.latent_dim = 128  # dimension
    m.decoder_width = 512  # n_filters * 2 ** len(ratios)
    m.decoder_strides = (8, 5, 4, 2)
    m.dilations = (1,)  # n_residual_layers = 1, dilation_base ** 0
    m.vq_strides = (1,) * 32  # n_q = 32 at 24 kbps
    m.codebook_size = 1024
    m.codebook_dim = 128  # no projection
    m.quantizer_dropout = 0.5
    m.arch = "seanet"
    m.quantizer = "plain"
    m.transpose_trim = "exact"
    m.transpose_norm = "in"  # torch's weight_norm on ConvTranspose1d
    m.final_activation = "none"
    m.seanet.pad_mode = "reflect"
    m.seanet.lstm_layers = 2
    m.seanet.residual_compress = 2
    m.seanet.true_skip = False

    config.discriminator.kinds = ("mpd", "mrd")
    loss = config.loss
    loss.cqt_weight = 0.0
    loss.onset_weight = 0.0
    loss.balancer = True
    config.train.segment_seconds = 1.0
    config.train.dead_code_threshold = 0.0
    # The original takes audio at the level it comes (EnCodec 24 kHz and SNAC normalize
    # nothing), so the imported weights are used the same way.
    config.data.normalize = False
    if variants.runlocal:
        common.shrink_for_cpu(config, segment_seconds=0.1)
    config.lock()
    return config
