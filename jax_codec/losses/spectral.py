"""Spectral reconstruction losses: STFT, multi-resolution mel (DAC) and multi-scale STFT.

Shape key: B batch, T samples, F frames. Waveforms are mono `[B, T]` float32.

The definitions follow descript-audio-codec's `MelSpectrogramLoss` and `MultiScaleSTFTLoss`
(dac/nn/loss.py, via audiotools): per resolution a centred STFT with reflect padding, a periodic
Hann window of length `n_fft`, hop `n_fft // 4`; L1 between `log10(clamp(mag, eps) ** power)`,
each resolution's L1 averaged over all elements, and the resolutions SUMMED (DAC's scale, so the
numbers compare with the mel distances in the DAC paper; pass `reduction="mean"` to average).

Filter banks and windows are built once on the host with librosa/scipy (cached) and enter the
jitted computation as constants. The target is treated as a constant (`stop_gradient`), so the
backward pass only differentiates the prediction's spectra.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import scipy.signal

Array = jax.Array

# Floor added to |X|^2 before the square root: keeps d|X|/dX finite at X = 0 (jnp.abs of a
# complex zero has a NaN gradient) while changing magnitudes by at most 1e-6, far below the
# 1e-5 log clamp.
_MAG_EPS = 1e-12
# Filter-bank matmuls are tiny; full precision keeps TPU/GPU (bf16/TF32 by default) from
# biasing the log of small magnitudes.
_PRECISION = jax.lax.Precision.HIGHEST


@functools.lru_cache(maxsize=64)
def get_window(window: str, n_fft: int) -> np.ndarray:
    """Periodic (FFT-friendly) window of length `n_fft` as float32 numpy, as scipy/torch use."""
    return scipy.signal.get_window(window, n_fft, fftbins=True).astype(np.float32)


@functools.lru_cache(maxsize=64)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """librosa (Slaney) mel filter bank `[n_mels, n_fft // 2 + 1]` as float32 numpy."""
    with warnings.catch_warnings():
        # DAC's finest settings (e.g. 320 bands on a 2048 FFT) leave some low bands without an
        # FFT bin; the reference has the same empty bands, so the warning is expected noise.
        warnings.filterwarnings("ignore", message="Empty filters detected")
        basis = librosa.filters.mel(
            sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax
        )
    return basis.astype(np.float32)


def frame(x: Array, frame_length: int, hop_length: int) -> Array:
    """Overlapping frames of the last axis: `[..., T] -> [..., F, frame_length]`.

    F = 1 + (T - frame_length) // hop_length. When the hop divides the frame length (every
    loss here), frames are built from shifted reshapes, which differentiate into cheap adds
    instead of the scatter a gather's transpose needs.
    """
    length = x.shape[-1]
    if length < frame_length:
        raise ValueError(f"signal of {length} samples is shorter than one frame ({frame_length})")
    n_frames = 1 + (length - frame_length) // hop_length
    if frame_length % hop_length == 0:
        ratio = frame_length // hop_length
        n_hops = n_frames + ratio - 1
        chunks = x[..., : n_hops * hop_length].reshape(*x.shape[:-1], n_hops, hop_length)
        parts = [chunks[..., i : i + n_frames, :] for i in range(ratio)]
        return jnp.concatenate(parts, axis=-1)
    idx = np.arange(frame_length)[None, :] + hop_length * np.arange(n_frames)[:, None]
    return x[..., idx]


def stft(
    x: Array,
    n_fft: int,
    hop_length: int,
    window: str = "hann",
    center: bool = True,
    pad_mode: str = "reflect",
) -> Array:
    """Short-time Fourier transform, as torch.stft/librosa.stft with `win_length == n_fft`.

    Args:
      x: waveforms `[B, T]` (any leading dims work).
      n_fft: FFT and window length.
      hop_length: samples between frames.
      window: scipy window name; periodic.
      center: pad `n_fft // 2` on both sides so frame f is centred on sample `f * hop_length`.
      pad_mode: `jnp.pad` mode for centring ("reflect" as DAC/torch, "constant" as librosa).

    Returns:
      complex64 `[B, F, n_fft // 2 + 1]`, F = 1 + T // hop_length when centred.
    """
    if center:
        pad = [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        x = jnp.pad(x, pad, mode=pad_mode)
    frames = frame(x, n_fft, hop_length) * jnp.asarray(get_window(window, n_fft))
    return jnp.fft.rfft(frames, n=n_fft, axis=-1)


def magnitude(spec: Array) -> Array:
    """|spec| with a finite gradient at zero: `sqrt(re^2 + im^2 + 1e-12)`."""
    return jnp.sqrt(jnp.real(spec) ** 2 + jnp.imag(spec) ** 2 + _MAG_EPS)


def log_magnitude_l1(pred_mag: Array, target_mag: Array, clamp_eps: float, power: float) -> Array:
    """Mean L1 between `log10(max(mag, clamp_eps) ** power)` of prediction and target."""
    # log10(m ** p) == p * log10(m); the product form avoids overflow for large p.
    log_pred = power * jnp.log10(jnp.maximum(pred_mag, clamp_eps))
    log_target = power * jnp.log10(jnp.maximum(target_mag, clamp_eps))
    return jnp.mean(jnp.abs(log_pred - log_target))


def _per_resolution(value: float | None | Sequence[float | None], n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries, expected one per window ({n})")
        return list(value)
    return [value] * n


def _check_reduction(reduction: str) -> None:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; valid: 'sum', 'mean'")


def _reduce(losses: list[Array], reduction: str) -> Array:
    return sum(losses) / len(losses) if reduction == "mean" else sum(losses)


def mel_spectrogram(
    x: Array,
    sample_rate: int,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    window: str = "hann",
) -> Array:
    """Mel-filtered STFT magnitude (not power), as DAC: `[B, T] -> [B, F, n_mels]`."""
    mag = magnitude(stft(x, n_fft, hop_length, window=window))
    basis = jnp.asarray(mel_filterbank(int(sample_rate), n_fft, n_mels, fmin, fmax))
    return jnp.matmul(mag, basis.T, precision=_PRECISION)


def multi_resolution_mel_loss(
    pred: Array,
    target: Array,
    sample_rate: int,
    window_lengths: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
    n_mels: Sequence[int] = (5, 10, 20, 40, 80, 160, 320),
    clamp_eps: float = 1e-5,
    mag_weight: float = 0.0,
    log_weight: float = 1.0,
    power: float = 2.0,
    mel_fmin: float | Sequence[float] = 0.0,
    mel_fmax: float | None | Sequence[float | None] = None,
    window: str = "hann",
    reduction: str = "sum",
) -> Array:
    """DAC's multi-resolution mel loss between waveforms `pred`, `target` `[B, T]` -> scalar.

    Per resolution (window w, hop w // 4): `log_weight * L1(log10(clamp(mel)^power))
    + mag_weight * L1(mel)`, then summed over resolutions (`reduction="sum"`, DAC) or averaged.
    DAC's class default is `power=2`; its training config (conf/base.yml) uses `power=1.0`.
    `mel_fmin`/`mel_fmax` may be one value or one per resolution.
    """
    _check_reduction(reduction)
    if len(window_lengths) != len(n_mels):
        raise ValueError("window_lengths and n_mels need one entry per resolution")
    fmins = _per_resolution(mel_fmin, len(window_lengths), "mel_fmin")
    fmaxs = _per_resolution(mel_fmax, len(window_lengths), "mel_fmax")
    target = jax.lax.stop_gradient(target)
    losses = []
    for n_fft, bands, fmin, fmax in zip(window_lengths, n_mels, fmins, fmaxs, strict=True):
        kwargs = dict(
            sample_rate=sample_rate,
            n_fft=n_fft,
            hop_length=n_fft // 4,
            n_mels=bands,
            fmin=fmin,
            fmax=fmax,
            window=window,
        )
        pred_mel = mel_spectrogram(pred, **kwargs)
        target_mel = mel_spectrogram(target, **kwargs)
        loss = log_weight * log_magnitude_l1(pred_mel, target_mel, clamp_eps, power)
        if mag_weight:
            loss = loss + mag_weight * jnp.mean(jnp.abs(pred_mel - target_mel))
        losses.append(loss)
    return _reduce(losses, reduction)


def multi_scale_stft_loss(
    pred: Array,
    target: Array,
    window_lengths: Sequence[int] = (2048, 512),
    clamp_eps: float = 1e-5,
    mag_weight: float = 1.0,
    log_weight: float = 1.0,
    power: float = 2.0,
    window: str = "hann",
    reduction: str = "sum",
) -> Array:
    """DAC's multi-scale STFT loss between waveforms `pred`, `target` `[B, T]` -> scalar.

    Per scale (window w, hop w // 4): `log_weight * L1(log10(clamp(|X|)^power))
    + mag_weight * L1(|X|)`, summed over scales (`reduction="sum"`, DAC) or averaged.
    """
    _check_reduction(reduction)
    target = jax.lax.stop_gradient(target)
    losses = []
    for n_fft in window_lengths:
        pred_mag = magnitude(stft(pred, n_fft, n_fft // 4, window=window))
        target_mag = magnitude(stft(target, n_fft, n_fft // 4, window=window))
        loss = log_weight * log_magnitude_l1(pred_mag, target_mag, clamp_eps, power)
        if mag_weight:
            loss = loss + mag_weight * jnp.mean(jnp.abs(pred_mag - target_mag))
        losses.append(loss)
    return _reduce(losses, reduction)


def waveform_l1_loss(pred: Array, target: Array) -> Array:
    """Mean absolute sample difference of `[B, T]` waveforms (DAC's `L1Loss` on audio)."""
    return jnp.mean(jnp.abs(pred - jax.lax.stop_gradient(target)))


def si_sdr_loss(pred: Array, target: Array, eps: float = 1e-8) -> Array:
    """Minus the mean scale-invariant SDR (dB) of `[B, T]` waveforms: `pred` projected on the
    mean-removed `target`, the projection's energy over the residual's (Le Roux et al. 2019).

    The metric the evaluation reports, as a loss. It depends only on the normalised
    correlation rho of the two signals (SI-SDR = 10 log10(rho^2 / (1 - rho^2))), so it pulls
    the waveform into alignment without pulling the level anywhere: the spectral terms set
    the level. Unlike a waveform L1, whose optimum on a signal the model cannot yet predict is
    silence, its gradient does not shrink the output. A silent reference (the side signal of
    a mono crop) has no SI-SDR: its term is then large and carries no useful gradient.
    """
    target = jax.lax.stop_gradient(target)
    x = target - jnp.mean(target, axis=-1, keepdims=True)
    y = pred - jnp.mean(pred, axis=-1, keepdims=True)
    scale = jnp.sum(x * y, axis=-1, keepdims=True) / (jnp.sum(x * x, axis=-1, keepdims=True) + eps)
    projection = scale * x
    signal = jnp.sum(jnp.square(projection), axis=-1)
    residual = jnp.sum(jnp.square(y - projection), axis=-1)
    return -jnp.mean(10.0 * jnp.log10((signal + eps) / (residual + eps)))


def band_energy_loss(
    pred: Array,
    target: Array,
    sample_rate: int,
    n_fft: int = 2048,
    n_mels: int = 64,
    clamp_eps: float = 1e-10,
) -> Array:
    """L1 between log10 long-term band energies of `pred` and `target` `[B, T]` -> scalar.

    Per example, the mel-band power (window `n_fft`, hop `n_fft // 4`) is averaged over the
    whole crop before the log, so the loss sees level and spectral balance, not the fine
    structure. Frame-wise log-magnitude L1 (the mel loss) pulls each bin towards the median
    of what the model cannot predict, which lies below its mean power: a codec trained on it
    alone comes out too quiet. Energy averaged first has no such bias. One log10 unit is 10 dB.
    """
    target = jax.lax.stop_gradient(target)

    def energy(x: Array) -> Array:
        power = magnitude(stft(x, n_fft, n_fft // 4)) ** 2
        basis = jnp.asarray(mel_filterbank(int(sample_rate), n_fft, n_mels))
        return jnp.mean(jnp.matmul(power, basis.T, precision=_PRECISION), axis=1)

    log_pred = jnp.log10(jnp.maximum(energy(pred), clamp_eps))
    log_target = jnp.log10(jnp.maximum(energy(target), clamp_eps))
    return jnp.mean(jnp.abs(log_pred - log_target))


def complex_stft_loss(
    pred: Array,
    target: Array,
    window_lengths: Sequence[int] = (2048, 512, 128),
    compress: float = 0.3,
    window: str = "hann",
    reduction: str = "sum",
) -> Array:
    """L1 between power-law compressed complex spectra, `|X|^c e^{i angle X}`, of `[B, T]`
    waveforms -> scalar (windows summed, or averaged with `reduction="mean"`).

    Unlike the magnitude losses it sees phase, so it pulls the waveform into alignment with
    the input (SI-SDR); the compression (c = 0.3, as in speech enhancement) keeps quiet bins
    from vanishing beside loud ones, so the loss does not depend on the level as waveform
    L1 does.
    """
    _check_reduction(reduction)
    target = jax.lax.stop_gradient(target)

    def compressed(x: Array, n_fft: int) -> Array:
        spec = stft(x, n_fft, n_fft // 4, window=window)
        # Floored so near-silent bins keep a bounded gradient.
        return spec * jnp.maximum(magnitude(spec), 1e-5) ** (compress - 1.0)

    losses = []
    for n_fft in window_lengths:
        diff = compressed(pred, n_fft) - compressed(target, n_fft)
        losses.append(jnp.mean(magnitude(diff)))
    return _reduce(losses, reduction)
