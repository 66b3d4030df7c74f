"""What every preset shares: the variant parser and the default config, every field declared once.

A preset is `get_config(arg)`: `default_config()` with some values changed, the variants in
`arg` parsed by `parse_arg` (big_vision's `bvcc.parse_arg`):

    def get_config(arg=None):
        arg = common.parse_arg(arg, runlocal=False)
        config = common.default_config()
        config.name = common.config_name("my_preset", arg)
        config.model.latent_dim = 256
        if arg.runlocal:
            common.shrink_for_cpu(config, segment_seconds=0.1)
        config.lock()
        return config
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_collections

from jax_codec.data import augment
from jax_codec.models.discriminators import default_discriminator_config

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _to_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
    """The variant string after the colon of `preset:arg`, as typed values.

    `spec` names every variant with its default; a default `(value, convert)` gives the
    string converter explicitly, otherwise the default's type does (bool, int, float, str).
    `arg` is comma separated: a bare name sets a boolean variant to True, `name=value` sets
    any variant. `parse_arg("runlocal,noncausal", runlocal=False, noncausal=False)` is
    `ConfigDict(runlocal=True, noncausal=True)`; an unknown name raises a ValueError listing
    the choices.
    """
    defaults, converters = {}, {}
    for name, default in spec.items():
        if isinstance(default, tuple) and len(default) == 2 and callable(default[1]):
            defaults[name], converters[name] = default
        else:
            defaults[name] = default
            kind = type(default)
            converters[name] = _to_bool if kind is bool else kind
    result = ml_collections.ConfigDict(defaults)
    choices = ", ".join(spec) or "none: this preset has no variants"
    for token in (arg or "").split(","):
        token = token.strip()
        if not token:
            continue
        name, has_value, text = token.partition("=")
        name = name.strip()
        if name not in spec:
            raise ValueError(f"unknown variant {name!r}; choose from {choices}")
        convert: Callable[[str], Any] = converters[name]
        if not has_value:
            if convert is not _to_bool:
                raise ValueError(f"variant {name!r} needs a value: {name}=...")
            text = "true"
        try:
            result[name] = convert(text.strip())
        except (TypeError, ValueError) as e:
            raise ValueError(f"variant {name}={text!r}: {e}") from None
    return result


def config_name(prefix: str, arg: str | None, skip: tuple[str, ...] = ()) -> str:
    """`prefix` plus `_variant` for each variant of `arg` in the order given (the default
    work dir is runs/<name>): `config_name("base", "runlocal")` is `"base_runlocal"`."""
    tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
    return prefix + "".join(f"_{t}" for t in tokens if t.partition("=")[0] not in skip)


def default_config() -> ml_collections.ConfigDict:
    """Every config field with its default and its one comment: the flagship model (base.py)
    and training recipe, locked. Presets change values; they never add fields."""
    config = ml_collections.ConfigDict()
    # Config name; the default work dir is runs/<name>.
    config.name = "base"

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
    # Dilations of the residual units in every encoder/decoder block.
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
    # Compute dtype of encoder/decoder/discriminators: "auto" is bfloat16 on GPU/TPU and
    # float32 on CPU. Parameters, losses and the quantizer always stay float32.
    model.dtype = "auto"
    # Rematerialise encoder/decoder blocks in the backward pass: less activation memory for
    # about a third more compute; the same parameters (see configs/tpu_v5e.py).
    model.remat = False
    # Architecture (jax_codec.models.codec.Codec): "dac" (Snake residual units), "seanet"
    # (EnCodec's; options in model.seanet), "snac" (DAC's modules; options in model.snac) or
    # "spectrostream" (STFT and 2-D convs; options in model.spectrostream).
    model.arch = "dac"
    # "factorized" (DAC's projected, L2-normalised VQ), "plain" (EnCodec's Euclidean VQ) or
    # "euclidean" (SpectroStream's arithmetic for the same VQ).
    model.quantizer = "factorized"
    # Transposed convs: "exact" (F frames -> F * stride samples) or "symmetric" trim (DAC's;
    # odd strides lose a sample).
    model.transpose_trim = "exact"
    # Transposed convs' weight-norm axis: "out", or "in" (torch's weight_norm on a
    # ConvTranspose1d, as in DAC, EnCodec and SNAC checkpoints).
    model.transpose_norm = "out"
    # Output activation: "tanh" or "none" (EnCodec).
    model.final_activation = "tanh"
    # Audio channels: 1 (mono; stereo files are coded as two mono streams), or 2 (joint stereo:
    # both channels in, one code stream shaped as a mono model's, both out; docs/stereo.md).
    model.channels = 1
    # What a stereo model's convolutions see: "ms" (mid (L+R)/2 and side (L-R)/2) or "lr"
    # (left and right); ignored when mono.
    model.stereo = "ms"
    # stereo="ms" only: the encoder sees the side times this (the decoder still outputs the
    # side itself). Music's side is often 10-20 dB below its mid; a gain > 1 lets it reach the
    # latent at the mid's level (docs/stereo.md).
    model.side_gain = 1.0
    # Delayed stereo fusion (arch "dac" / "snac", channels=2): the encoder's first conv and first
    # this many blocks, and the decoder's last as many blocks and last conv, code each channel
    # apart with the same weights (channels folded into the batch); the blocks between code
    # them jointly. 0: joint throughout (docs/stereo.md).
    model.stereo_split_blocks = 0
    # arch "dac" / "snac": the fewest channels a decoder block may have (0: each block halves
    # the channels). A narrow decoder's last block (runlocal's: 96 / 16 = 6 channels at full
    # rate) must carry both mid and side in a joint-stereo model (docs/stereo.md).
    model.decoder_min_width = 0
    # Joint mid/side models (arch "dac" / "snac"): the decoder adds to its side a prediction
    # from its own decoded mid, over this many learned bands with a gain per frame each (0:
    # none; docs/stereo.md).
    model.side_from_mid = 0
    # Joint mid/side models (arch "dac" / "snac"): decode the side with a second decoder this
    # wide, over the same latent (0: one decoder makes mid and side; docs/stereo.md).
    model.side_decoder_width = 0
    # With a side decoder: bits only it reads. The encoder adds a side latent of this many
    # dims; the quantizer levels listed (indices into vq_strides, never 0) quantize it instead
    # of the joint latent, at the same bitrate per level (() and 0: none; docs/stereo.md).
    model.side_latent_dim = 0
    model.side_levels = ()
    # Joint mid/side models (arch "dac" / "snac"): the decoded side is scaled by a gate per
    # frame, sigmoid of a value the decoder reads from the latent, so a (near-)mono passage
    # can decode with a side far below the mid, as dual mono does (docs/stereo.md).
    model.side_gate = False

    seanet = model.seanet = ml_collections.ConfigDict()
    # Options of arch="seanet" only (configs/encodec_24khz.py).
    # Conv padding: "zeros" or "reflect" (EnCodec's; offline only).
    seanet.pad_mode = "zeros"
    # LSTM layers at the bottleneck (0: none; offline only).
    seanet.lstm_layers = 0
    # Residual blocks narrow their hidden channels by this factor.
    seanet.residual_compress = 2
    # Identity skip in the residual blocks (False: a k=1 conv).
    seanet.true_skip = False

    snac = model.snac = ml_collections.ConfigDict()
    # Options of arch="snac" only (configs/snac_*.py).
    # Depthwise k=7 convs (residual units, the encoder's last conv, the decoder's first).
    snac.depthwise = False
    # Local attention over windows of this many latent frames in encoder and decoder (0: none).
    snac.attn_window = 0
    # Noise blocks in the decoder (zero noise unless a "noise" RNG is passed: Codec.noise).
    snac.noise = False

    spectro = model.spectrostream = ml_collections.ConfigDict()
    # Options of arch="spectrostream" only (configs/spectrostream_48khz.py; its values).
    # STFT frame, hop and FFT lengths in samples (Hann window; the Nyquist bin is dropped).
    spectro.stft_frame_length = 960
    spectro.stft_frame_step = 480
    spectro.stft_fft_length = 960
    # Per 2-D block its (time, frequency) strides, encoder order (the decoder's are reversed).
    spectro.ratios2d = ((1, 2), (1, 2), (1, 3), (1, 2), (1, 2), (2, 2), (2, 1))
    # Per block its channel multiplier, encoder order.
    spectro.mults = (2, 1, 2, 1, 1, 2, 1)
    # Kernel (time and frequency) of the encoder's first and the decoder's last conv.
    spectro.base_conv_size = 7
    # Delayed stereo fusion: channel groups coded apart (shared weights) by the first blocks.
    spectro.channel_splits = 2
    # The encoder block whose input concatenates the groups (negative: counted from the end).
    spectro.channel_recombo_block = -2
    # Latent frames the decoder looks ahead (its output lags that many frames in a stream).
    spectro.decoder_lookahead = 1

    # Discriminators (kinds, periods, windows, widths, stereo input): the fields and their
    # comments are in `jax_codec.models.discriminators.default_discriminator_config`.
    config.discriminator = default_discriminator_config()

    loss = config.loss = ml_collections.ConfigDict()
    # Multi-resolution log-mel L1 (DAC's definition, summed over resolutions) and its weight.
    loss.mel_weight = 15.0
    # Mel STFT window lengths (hop = window / 4) and mel bands per resolution.
    loss.mel_window_lengths = (32, 64, 128, 256, 512, 1024, 2048)
    loss.mel_n_mels = (5, 10, 20, 40, 80, 160, 320)
    # Magnitude exponent before the log (DAC trains with 1).
    loss.mel_power = 1.0
    # Multi-scale STFT log-magnitude loss weight (0 disables).
    loss.stft_weight = 1.0
    # Compressed complex multi-resolution STFT L1 (sees phase: waveform alignment) and
    # waveform L1 loss weights (0 disables).
    loss.complex_stft_weight = 0.0
    loss.waveform_weight = 0.0
    # Minus SI-SDR in dB (the evaluation's waveform metric as a loss; level-free, so it aligns
    # the waveform without shrinking it as the waveform L1 does; 0 disables).
    loss.si_sdr_weight = 0.0
    # Long-term band-energy L1 (log mel-band power averaged over the crop): holds the output's
    # level and spectral balance, which frame-wise log-magnitude L1 lets drift low (0 disables).
    loss.band_energy_weight = 0.0
    # Constant-Q log-magnitude loss: pitch resolution in the bass and mids (0 disables).
    loss.cqt_weight = 1.0
    # Spectral-flux weighted log-mel loss: emphasises attacks/transients (0 disables).
    loss.onset_weight = 1.0
    # Generator adversarial loss weight.
    loss.adv_weight = 1.0
    # Discriminator feature-matching L1 weight.
    loss.fm_weight = 2.0
    # Feature matching summed over layers and discriminators ("sum", DAC's definition, which
    # its weight of 2 assumes) or averaged over them ("mean": ~100x weaker at DAC's widths).
    loss.fm_reduction = "sum"
    # VQ commitment (encoder -> codes) and codebook (codes -> encoder) loss weights.
    loss.commitment_weight = 0.25
    loss.codebook_weight = 1.0
    # Weight of each level's latent-space residual loss (`HierarchicalRVQ`'s `residual`: the
    # level's output fitted to its input, training only its codebook and output projection, so
    # the next level's residual shrinks). 0 is DAC's recipe (docs/training.md).
    loss.residual_weight = 0.0
    # Reconstruction-only warm-up: adv_g and fm count from this step on (D trains throughout).
    loss.gan_start_step = 0
    # "lsgan" or "hinge".
    loss.adversarial = "lsgan"
    # EnCodec-style gradient balancer over the audio losses (weights become gradient shares).
    loss.balancer = False
    # A stereo model's reconstruction losses (mel, stft, cqt, ...) are each a weighted mean of
    # that loss on the left, right, mid and side signals, with these weights (in that order).
    loss.stereo_weights = (1.0, 1.0, 1.0, 1.0)
    # A stereo model's image loss (`losses.stereo_image_loss`): per time-frequency tile, the
    # L1 of the inter-channel level difference (log10) and of the inter-channel correlation,
    # which the per-signal losses leave free (0 disables; mono models have no such term).
    loss.stereo_image_weight = 10.0

    optim = config.optim = ml_collections.ConfigDict()
    # Peak learning rates of generator and discriminators (AdamW).
    optim.learning_rate = 1e-4
    optim.disc_learning_rate = 1e-4
    # AdamW betas and weight decay.
    optim.b1 = 0.8
    optim.b2 = 0.99
    optim.weight_decay = 0.01
    # Linear warmup steps, then exponential decay by `decay_rate` per step.
    optim.warmup_steps = 1000
    optim.decay_rate = 0.999996
    # Global-norm gradient clipping of generator and discriminators.
    optim.clip_norm = 1000.0
    optim.disc_clip_norm = 10.0

    train = config.train = ml_collections.ConfigDict()
    # Total optimizer steps.
    train.num_steps = 400_000
    # Global batch size (all devices of all hosts); must divide evenly over the devices.
    # 8 fits the full model's step in a CPU host's memory; raise it on accelerators.
    train.batch_size = 8
    # Training crop length in seconds (rounded down to a multiple of the codec's block).
    train.segment_seconds = 0.38
    # Steps between scalar logs, evaluations and checkpoints.
    train.log_every = 50
    train.eval_every = 2000
    train.checkpoint_every = 2000
    # Base seed for parameters, dropout and data order.
    train.seed = 0
    # Where the state is initialised: "device" (compiled for the mesh), "host" (on this
    # process's CPU, then placed on the mesh) or "auto" (host on an accelerator, device on CPU).
    train.init_on = "auto"
    # Decay of an exponential moving average of generator params (0 disables).
    train.ema_decay = 0.0
    # Dead-code restart (EnCodec): a code whose EMA use count per step falls below this is
    # replaced by a random encoder output of the batch (0 disables).
    train.dead_code_threshold = 0.01
    # Decay of that EMA (0.95: a code unused for ~90 steps is restarted).
    train.dead_code_decay = 0.95
    # ... slowed where a step holds few vectors, so that the EMA spans at least this many uses
    # of a code used at the uniform rate (`training.codebooks.dead_code_decay`; 0: the decay above).
    train.dead_code_min_hits = 0.0
    # EnCodec's codebook update (`model.quantizer="plain"` only; 0: off, codebooks learn from
    # the codebook loss): after each step, a code used in the batch keeps this fraction of
    # itself and moves the rest of the way to the mean of the inputs it coded. With it on, set
    # loss.codebook_weight=0, as EnCodec has no codebook loss.
    train.codebook_ema_decay = 0.0
    # The use count a new or restarted code starts from: at 1 (a code used once every step) a
    # code that never wins lasts about ln(100) / (1 - decay) steps; just above the threshold,
    # about ln(1 + margin) / (1 - decay), so codes that never win are soon moved onto the data.
    train.dead_code_grace = 1.0
    # Restarted codes are no longer than the level's median live code (their direction is
    # kept): long encoder outputs copied in can otherwise blow up every level after them.
    train.dead_code_clip_norm = True

    mesh = config.mesh = ml_collections.ConfigDict()
    # Device mesh: data-parallel size (-1 = all remaining devices) and FSDP size.
    mesh.data = -1
    mesh.fsdp = 1

    data = config.data = ml_collections.ConfigDict()
    # Training audio: "synthetic" (built-in procedural music), "folder:PATH" (a directory of
    # wav/flac/ogg/opus/mp3, local or gs://) or "tfds:NAME/SPLIT[:FEATURE]" (a TFDS dataset in
    # ArrayRecord format).
    data.source = "synthetic"
    # A weighted mixture instead: data.sources=("folder:/a", "tfds:b/train"), data.weights=(3, 1).
    data.sources = ()
    data.weights = ()
    data.eval_source = ""  # held-out audio for evaluation ("": other crops of the training data)
    # A mono model's data: 1: mono mixdown; 2: stereo, each channel its own batch row. A stereo
    # model (model.channels=2) always reads stereo pairs, kept together: batches [B, T, 2].
    data.channels = 1
    data.silence_threshold_db = -60.0  # crops (and whole files) quieter than this are rejected
    # Normalize every crop to `normalize_db` before augmentation, and `compress`'s input too
    # (dBFS, gated mean square: jax_codec/levels.py; -18 is about DAC's -16 LUFS for music).
    # False: levels as they are.
    data.normalize = True
    data.normalize_db = -18.0
    data.max_crop_tries = 8  # random crops tried in a clip before moving to another clip
    data.content_check = True  # decode each file once when indexing (all-silent, NaN/inf)
    data.index_workers = 8  # threads that index a folder
    data.tfds_data_dir = ""  # TFDS data_dir ("": TFDS's default, ~/tensorflow_datasets)
    data.num_threads = 1  # reader threads: 1 reads ahead on one core (~250 audio s/s of base)
    data.prefetch = 8  # batches read ahead
    data.augment = augment.default_config()
    config.lock()  # presets change values; a misspelt field fails instead of being added
    return config


def shrink_for_cpu(config: ml_collections.ConfigDict, segment_seconds: float) -> None:
    """The `runlocal` variant of the imported-architecture presets (DAC, EnCodec): tiny
    batch and crops, few steps, small discriminators, for fine-tuning on a CPU. The model is
    left as it is, so converted weights still fit."""
    d = config.discriminator
    d.periods = (2, 3, 5)
    d.mrd_window_lengths = (1024, 512)
    d.channels = 8
    config.loss.mel_window_lengths = (64, 256, 1024)
    config.loss.mel_n_mels = (10, 40, 160)
    config.optim.warmup_steps = 10
    t = config.train
    t.num_steps = 100
    t.batch_size = 1
    t.segment_seconds = segment_seconds
    t.log_every = 1
    t.eval_every = 50
    t.checkpoint_every = 50
    config.data.prefetch = 2
