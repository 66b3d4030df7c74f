"""DAC's mel and multi-scale STFT distances, and the signal checks every metric shares.

Signals are float ``[T]`` (mono) or ``[C, T]`` (channels first), reference first, estimate
second, of the same shape (`ValueError` otherwise). `jax_codec.evaluation.metrics` re-exports
the names here; import them from there.

- `mel_distance`, `stft_distance`: exactly descript-audio-codec's `MelSpectrogramLoss` and
  `MultiScaleSTFTLoss` (dac/nn/loss.py over audiotools) with DAC's configuration
  (conf/base.yml): mel over windows 32..2048 with 5..320 bands, hop = window / 4, centred STFT
  with reflect padding and a periodic Hann window, `log10(clamp(mel, 1e-5) ** 1)` L1 averaged
  per resolution and summed over the 7 resolutions; STFT over windows 2048 and 512,
  `log10(clamp(|X|, 1e-5) ** 2)` L1 plus |X| L1 per window, summed. These are the numbers DAC's
  paper and `scripts/evaluate.py` report, at the sample rate given (DAC reports both 22.05 and
  44.1 kHz). Channels enter the mean like batch items, as in DAC. Filter banks and windows are
  the ones the training loss in `jax_codec.losses.spectral` uses; computed in float64 on the
  host, in blocks of frames, so long files need little memory.
- `as_channels_first`, `_pair`, `_check_rate`: the input checks of every metric;
  `_stft_blocks`: the blocked complex STFT the stereo image metrics share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jax_codec.losses.spectral import get_window, mel_filterbank

# DAC's evaluation settings (descript-audio-codec conf/base.yml; MultiScaleSTFTLoss defaults).
MEL_WINDOW_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_N_MELS = (5, 10, 20, 40, 80, 160, 320)
MEL_POWER = 1.0
MEL_MAG_WEIGHT = 0.0
STFT_WINDOW_LENGTHS = (2048, 512)
STFT_POWER = 2.0
STFT_MAG_WEIGHT = 1.0
LOG_WEIGHT = 1.0
CLAMP_EPS = 1e-5

# Frames per STFT block, as a budget of samples: bounds memory on long files.
_BLOCK_SAMPLES = 1 << 21


# ---------------------------------------------------------------------------------------------
# Input checks


def as_channels_first(x: np.ndarray, name: str = "audio") -> np.ndarray:
    """``[T]`` or ``[C, T]`` -> float64 ``[C, T]``; rejects other ranks, ``[T, C]``-looking
    arrays, empty or non-finite signals."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [T] or [C, T], got shape {np.shape(x)}")
    if a.shape[0] > 8 and a.shape[0] > a.shape[1]:
        raise ValueError(
            f"{name} must be [T] or [C, T] (channels first), got shape {a.shape}; "
            "transpose a [T, C] array"
        )
    if a.shape[1] == 0:
        raise ValueError(f"{name} is empty")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite samples")
    return a


def _pair(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = as_channels_first(ref, "ref")
    e = as_channels_first(est, "est")
    if r.shape[0] != e.shape[0]:
        raise ValueError(f"ref has {r.shape[0]} channel(s) but est has {e.shape[0]}")
    if r.shape[1] != e.shape[1]:
        raise ValueError(
            f"ref and est differ in length ({r.shape[1]} vs {e.shape[1]} samples); "
            "align and trim them to the same length before measuring"
        )
    return r, e


def _check_rate(sr: float) -> int:
    if not sr or sr <= 0 or int(sr) != sr:
        raise ValueError(f"sample rate must be a positive integer, got {sr}")
    return int(sr)


# ---------------------------------------------------------------------------------------------
# DAC's mel and multi-scale STFT distances


def _stft_magnitude_blocks(x: np.ndarray, n_fft: int):
    """Yields |STFT| of `x` ``[C, T]`` in blocks of frames, each ``[C, F_block, n_fft//2+1]``.

    As torch.stft(center=True, pad_mode="reflect", window=periodic hann(n_fft)), hop n_fft // 4,
    which is what audiotools' `AudioSignal.stft` runs for DAC's losses (match_stride=False).
    """
    for block in _stft_blocks(x, n_fft):
        yield np.abs(block)


def _stft_blocks(x: np.ndarray, n_fft: int, multiple: int = 1):
    """The complex STFT of `_stft_magnitude_blocks`, in blocks of a multiple of `multiple`
    frames (all but the last)."""
    pad = n_fft // 2
    if x.shape[-1] <= pad:
        raise ValueError(
            f"signal of {x.shape[-1]} samples is too short for a {n_fft}-sample window "
            f"(reflect padding needs more than {pad})"
        )
    hop = n_fft // 4
    padded = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]
    window = get_window("hann", n_fft).astype(np.float64)
    step = max(1, _BLOCK_SAMPLES // (n_fft * x.shape[0]) // multiple) * multiple
    for start in range(0, frames.shape[1], step):
        block = frames[:, start : start + step] * window
        yield np.fft.rfft(block, n=n_fft, axis=-1)


def _log_clamped(m: np.ndarray, clamp_eps: float, power: float) -> np.ndarray:
    return power * np.log10(np.maximum(m, clamp_eps))


def _spectral_l1(
    ref: np.ndarray,
    est: np.ndarray,
    n_fft: int,
    transform: Callable[[np.ndarray], np.ndarray],
    clamp_eps: float,
    power: float,
    mag_weight: float,
    log_weight: float,
) -> float:
    """`log_weight * mean|log10(clamp(A)^p) - log10(clamp(B)^p)| + mag_weight * mean|A - B|`
    with A, B = `transform(|STFT|)` of `est`, `ref`, means over every element."""
    log_sum = mag_sum = 0.0
    count = 0
    for mr, me in zip(
        _stft_magnitude_blocks(ref, n_fft), _stft_magnitude_blocks(est, n_fft), strict=True
    ):
        a, b = transform(mr), transform(me)
        log_sum += float(
            np.abs(_log_clamped(b, clamp_eps, power) - _log_clamped(a, clamp_eps, power)).sum()
        )
        if mag_weight:
            mag_sum += float(np.abs(b - a).sum())
        count += a.size
    return log_weight * log_sum / count + (mag_weight * mag_sum / count if mag_weight else 0.0)


def mel_distance(
    ref: np.ndarray,
    est: np.ndarray,
    sr: int,
    *,
    window_lengths: Sequence[int] = MEL_WINDOW_LENGTHS,
    n_mels: Sequence[int] = MEL_N_MELS,
    power: float = MEL_POWER,
    clamp_eps: float = CLAMP_EPS,
    mag_weight: float = MEL_MAG_WEIGHT,
    log_weight: float = LOG_WEIGHT,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> float:
    """DAC's multi-resolution mel distance (its `MelSpectrogramLoss` with conf/base.yml).

    Per window w (hop w / 4): mel magnitude spectrogram M = |STFT| @ librosa_mel(sr, w, bands).T,
    then `log_weight * mean|log10(clamp(M_est, eps)^p) - log10(clamp(M_ref, eps)^p)|
    + mag_weight * mean|M_est - M_ref|`; the resolutions are summed. 0 for identical signals.
    Needs more than `max(window_lengths) / 2` samples.
    """
    sr = _check_rate(sr)
    r, e = _pair(ref, est)
    if len(window_lengths) != len(n_mels):
        raise ValueError("window_lengths and n_mels need one entry per resolution")
    total = 0.0
    for n_fft, bands in zip(window_lengths, n_mels, strict=True):
        basis_t = mel_filterbank(sr, int(n_fft), int(bands), fmin, fmax).astype(np.float64).T
        total += _spectral_l1(
            r, e, int(n_fft), lambda m, b=basis_t: m @ b, clamp_eps, power, mag_weight, log_weight
        )
    return total


def stft_distance(
    ref: np.ndarray,
    est: np.ndarray,
    sr: int | None = None,
    *,
    window_lengths: Sequence[int] = STFT_WINDOW_LENGTHS,
    power: float = STFT_POWER,
    clamp_eps: float = CLAMP_EPS,
    mag_weight: float = STFT_MAG_WEIGHT,
    log_weight: float = LOG_WEIGHT,
) -> float:
    """DAC's multi-scale STFT distance (its `MultiScaleSTFTLoss` defaults, as conf/base.yml).

    Per window w (hop w / 4): `log_weight * mean|log10(clamp(|X_est|, eps)^p) -
    log10(clamp(|X_ref|, eps)^p)| + mag_weight * mean||X_est| - |X_ref||`, summed over windows.
    `sr` is unused (kept for a uniform signature). 0 for identical signals.
    """
    if sr is not None:
        _check_rate(sr)
    r, e = _pair(ref, est)
    return sum(
        _spectral_l1(r, e, int(n), lambda m: m, clamp_eps, power, mag_weight, log_weight)
        for n in window_lengths
    )
