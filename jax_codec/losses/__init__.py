"""Training losses: spectral (mel, STFT), music-aware (CQT, onsets), adversarial, balancer.

All are pure, jit-able JAX functions of mono waveforms `[B, T]` (B batch, T samples);
sample rates and sizes are Python numbers (static under `jit`).
"""

from jax_codec.losses.adversarial import (
    ADVERSARIAL_KINDS,
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
)
from jax_codec.losses.balancer import BalancerState, balance_gradients, init_balancer_state
from jax_codec.losses.music import (
    CQTKernel,
    cqt,
    cqt_kernel,
    cqt_loss,
    onset_weighted_loss,
    onset_weights,
)
from jax_codec.losses.spectral import (
    band_energy_loss,
    complex_stft_loss,
    mel_filterbank,
    mel_spectrogram,
    multi_resolution_mel_loss,
    multi_scale_stft_loss,
    si_sdr_loss,
    stft,
    waveform_l1_loss,
)
from jax_codec.losses.stereo import stereo_image_loss

__all__ = [
    "ADVERSARIAL_KINDS",
    "BalancerState",
    "CQTKernel",
    "balance_gradients",
    "band_energy_loss",
    "cqt",
    "cqt_kernel",
    "complex_stft_loss",
    "cqt_loss",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adv_loss",
    "init_balancer_state",
    "mel_filterbank",
    "mel_spectrogram",
    "multi_resolution_mel_loss",
    "multi_scale_stft_loss",
    "onset_weighted_loss",
    "onset_weights",
    "si_sdr_loss",
    "stereo_image_loss",
    "stft",
    "waveform_l1_loss",
]
