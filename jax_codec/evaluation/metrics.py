"""Objective audio-quality metrics for codec evaluation (numpy/scipy/librosa, deterministic).

Signals are float ``[T]`` (mono) or ``[C, T]`` (channels first, as `jax_codec.inference` reads
files), reference first, estimate (the decoded audio) second; both must have the same shape
(`ValueError` otherwise: align and trim before measuring). Lower is better for the distances,
higher for SI-SDR, ViSQOL, PESQ and STOI.

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
- `si_sdr`: scale-invariant SDR in dB, zero-mean, per channel, averaged over channels.
- `loudness_difference`: |integrated loudness(est) - loudness(ref)| in LU (ITU-R BS.1770-4 via
  pyloudnorm; all channels together, as the standard does).
- `cqt_distance`, `chroma_distance`: music-oriented: L1 between log10 constant-Q magnitudes
  (7 octaves from C1, 36 bins per octave) and between frame-normalised 12-bin chromagrams.
- `visqol`: ViSQOL v3 in audio mode (MOS-LQO, 1..~4.73) via the `visqol-python` package, on the
  channel mix-down resampled to 48 kHz.
- `pesq_wb` and `stoi`: SPEECH metrics (PESQ wide-band P.862.2 via `pesq`, STOI via `pystoi`),
  on the mix-down resampled to 16 kHz; meaningless on music, so their result names in
  `compute_all` carry a `_speech` suffix.

Codebook usage (which codes a codec's quantizers use) is `jax_codec.evaluation.codebook_usage`.

Stereo image (2-channel signals only; `STEREO_METRICS`, a `ValueError` for other channel
counts): `mel_distance_mid` and `mel_distance_side` are `mel_distance` on the mid
`(L + R) / 2` and on the side `(L - R) / 2` (the side's is what a codec that drops the stereo
image loses); `ild_difference` and `icc_difference` compare the inter-channel level difference
(dB) and the inter-channel correlation (phase-sensitive, -1..1) of reference and estimate per
time-frequency tile: 40 mel bands of a 2048-point STFT (hop 512), pooled over 16 frames, tiles
quieter than 60 dB below the reference's loudest ignored. These are the usual cues of
parametric stereo coding (the ILD and ICC of MPEG parametric stereo), measured, not coded.

Optional packages (visqol-python, pesq, pystoi; `pip install jax_codec[eval]`) are
imported when first needed; a missing one raises `MissingDependencyError` saying what to
install. `compute_all(..., which=None)` runs every metric whose package is installed.

Deterministic: no randomness anywhere, so the same inputs give the same numbers (BLAS/SIMD code
paths can differ in the last bit with memory alignment, ~1e-15 relative, invisible at any
printed precision).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import soxr

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

# Identical signals have no residual: SI-SDR is capped here so means and intervals stay finite.
SI_SDR_MAX_DB = 200.0

# Constant-Q settings of `cqt_distance`/`chroma_distance` (librosa's chroma_cqt defaults).
CQT_HOP = 512
CQT_BINS_PER_OCTAVE = 36
CQT_OCTAVES = 7
CQT_FMIN = 32.703195662574764  # C1

VISQOL_AUDIO_RATE = 48000
SPEECH_RATE = 16000

# Frames per STFT block, as a budget of samples: bounds memory on long files.
_BLOCK_SAMPLES = 1 << 21

# Stereo image metrics (`ild_difference`, `icc_difference`): STFT size (hop a quarter), mel
# bands, frames pooled per tile (~190 ms at 44.1 kHz), the level below the reference's loudest
# tile under which tiles are ignored, and the bound on an ILD (a silent channel's is infinite).
STEREO_N_FFT = 2048
STEREO_BANDS = 40
STEREO_TILE_FRAMES = 16
STEREO_FLOOR_DB = -60.0
ILD_LIMIT_DB = 40.0


class MissingDependencyError(ImportError):
    """An optional metric package is not installed; the message says how to install it."""


def _require(module: str, package: str, metric: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{metric} needs the `{package}` package: pip install {package} "
            f"(or pip install 'jax_codec[eval]'); import failed: {e}"
        ) from e


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


# ---------------------------------------------------------------------------------------------
# Waveform and loudness


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), zero-mean.

    Per channel, with r and e mean-removed: `a = <e, r> / <r, r>`,
    `SI-SDR = 10 log10(|a r|^2 / |e - a r|^2)`; averaged over channels. Invariant to the
    estimate's scale; capped at `SI_SDR_MAX_DB` (identical signals); NaN when a reference
    channel is constant (undefined).
    """
    r, e = _pair(ref, est)
    r = r - r.mean(axis=-1, keepdims=True)
    e = e - e.mean(axis=-1, keepdims=True)
    values = []
    for rc, ec in zip(r, e, strict=True):
        energy = float(rc @ rc)
        if energy == 0.0:
            values.append(math.nan)
            continue
        target = (float(ec @ rc) / energy) * rc
        noise = ec - target
        t_energy, n_energy = float(target @ target), float(noise @ noise)
        if t_energy == 0.0:  # estimate orthogonal to the reference
            values.append(-SI_SDR_MAX_DB)
        elif n_energy <= t_energy * 10.0 ** (-SI_SDR_MAX_DB / 10.0):
            values.append(SI_SDR_MAX_DB)
        else:
            values.append(10.0 * math.log10(t_energy / n_energy))
    return float(np.mean(values))


def loudness(x: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, pyloudnorm), all channels together.

    `-inf` for silence (everything gated). Needs at least 0.4 s of audio.
    """
    sr = _check_rate(sr)
    a = as_channels_first(x, "audio")
    if a.shape[1] < int(0.4 * sr):
        raise ValueError(f"loudness needs at least 0.4 s of audio, got {a.shape[1] / sr:.3f} s")
    pyln = _require("pyloudnorm", "pyloudnorm", "loudness")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns about clipping above 0 dBFS
        return float(pyln.Meter(sr).integrated_loudness(a.T))


# Silence (every block gated away) counts as BS.1770's absolute gate: a silent reconstruction
# of a -20 LUFS clip is 50 LU off, the largest error a listener can hear, not a missing value.
SILENCE_LUFS = -70.0


def loudness_floored(x: np.ndarray, sr: int) -> float:
    """`loudness`, with silence counted as `SILENCE_LUFS` (finite, so it can be averaged)."""
    return max(loudness(x, sr), SILENCE_LUFS)


def loudness_difference(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """|loudness(est) - loudness(ref)| in LU (= dB of gain for a scaled copy), silence counted
    as `SILENCE_LUFS`: 0 when both are silent, large when one is."""
    r, e = _pair(ref, est)
    return abs(loudness_floored(e, sr) - loudness_floored(r, sr))


# ---------------------------------------------------------------------------------------------
# Music: constant-Q and chroma


def _cqt_magnitude(x: np.ndarray, sr: int) -> np.ndarray:
    """|CQT| ``[C, bins, frames]`` (librosa, 7 octaves from C1, 36 bins/octave, hop 512)."""
    import librosa

    top = CQT_FMIN * 2.0**CQT_OCTAVES
    if top >= sr / 2:
        raise ValueError(f"CQT up to {top:.0f} Hz needs a sample rate above {2 * top:.0f} Hz")
    with warnings.catch_warnings():
        # The lowest bins' filters outlast short clips (C1 needs ~1.6 s); librosa says so for
        # each downsampled octave. The clip is measured as it is, for both signals alike.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large for input signal")
        return np.abs(
            librosa.cqt(
                x.astype(np.float64),
                sr=sr,
                hop_length=CQT_HOP,
                fmin=CQT_FMIN,
                n_bins=CQT_OCTAVES * CQT_BINS_PER_OCTAVE,
                bins_per_octave=CQT_BINS_PER_OCTAVE,
            )
        )


def _chroma(cqt_mag: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.feature.chroma_cqt(
        C=cqt_mag, sr=sr, hop_length=CQT_HOP, bins_per_octave=CQT_BINS_PER_OCTAVE, n_chroma=12
    )


def cqt_distance(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Mean |log10(clamp(|CQT_est|, 1e-5)) - log10(clamp(|CQT_ref|, 1e-5))| over bins, frames
    and channels: a log-frequency (musical pitch) spectral distance. 0 for identical signals."""
    sr = _check_rate(sr)
    r, e = _pair(ref, est)
    a, b = _cqt_magnitude(r, sr), _cqt_magnitude(e, sr)
    return float(np.mean(np.abs(_log_clamped(b, CLAMP_EPS, 1.0) - _log_clamped(a, CLAMP_EPS, 1.0))))


def chroma_distance(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Mean |chroma_est - chroma_ref| of 12-bin CQT chromagrams, each frame scaled to a maximum
    of 1 (librosa's chroma_cqt): harmony/pitch-class errors, in [0, 1]. 0 for identical signals.
    """
    sr = _check_rate(sr)
    r, e = _pair(ref, est)
    return float(
        np.mean(np.abs(_chroma(_cqt_magnitude(e, sr), sr) - _chroma(_cqt_magnitude(r, sr), sr)))
    )


# ---------------------------------------------------------------------------------------------
# Stereo image


def _stereo_pair(ref: np.ndarray, est: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    r, e = _pair(ref, est)
    if r.shape[0] != 2:
        raise ValueError(f"{metric} needs stereo (2-channel) audio, got {r.shape[0]} channel(s)")
    return r, e


def mel_distance_mid(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """`mel_distance` of the mids `(L + R) / 2` of stereo `ref` and `est` ``[2, T]``."""
    r, e = _stereo_pair(ref, est, "mel_distance_mid")
    return mel_distance(r.mean(axis=0), e.mean(axis=0), sr)


def mel_distance_side(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """`mel_distance` of the sides `(L - R) / 2` of stereo `ref` and `est` ``[2, T]``: the
    stereo image's error (large for an estimate that collapses to mono)."""
    r, e = _stereo_pair(ref, est, "mel_distance_side")
    return mel_distance((r[0] - r[1]) * 0.5, (e[0] - e[1]) * 0.5, sr)


def stereo_tiles(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per time-frequency tile of stereo `x` ``[2, T]``: (left power, right power, their
    cross power Re(L R*)), each ``[tiles, STEREO_BANDS]``.

    Tiles pool `STEREO_TILE_FRAMES` frames of a `STEREO_N_FFT` STFT (hop a quarter, as the mel
    distance) over the bins of each of `STEREO_BANDS` mel bands, weighted by the band's filter.
    """
    sr = _check_rate(sr)
    x = as_channels_first(x)
    if x.shape[0] != 2:
        raise ValueError(f"stereo tiles need 2 channels, got {x.shape[0]}")
    n_fft = STEREO_N_FFT
    basis_t = mel_filterbank(sr, n_fft, STEREO_BANDS).astype(np.float64).T  # [bins, bands]
    out = []
    for block in _stft_blocks(x, n_fft, STEREO_TILE_FRAMES):
        left, right = block[0], block[1]  # [frames, bins]
        per_frame = np.stack(
            [np.abs(left) ** 2, np.abs(right) ** 2, (left * right.conj()).real]
        )  # [3, frames, bins]
        frames = per_frame.shape[1]
        tiles = -(-frames // STEREO_TILE_FRAMES)
        pad = tiles * STEREO_TILE_FRAMES - frames
        per_frame = np.pad(per_frame, ((0, 0), (0, pad), (0, 0)))
        pooled = per_frame.reshape(3, tiles, STEREO_TILE_FRAMES, -1).sum(axis=2)
        out.append(pooled @ basis_t)  # [3, tiles, bands]
    left, right, cross = np.concatenate(out, axis=1)
    return left, right, cross


def _stereo_cues(ref: np.ndarray, est: np.ndarray, sr: int, metric: str):
    """(ILD dB, ICC) of reference and estimate on the tiles the reference is not silent in."""
    r, e = _stereo_pair(ref, est, metric)
    tiles_r, tiles_e = stereo_tiles(r, sr), stereo_tiles(e, sr)
    power = tiles_r[0] + tiles_r[1]
    top = float(power.max())
    if top <= 0.0:
        raise ValueError(f"{metric}: the reference is silent (no stereo image to compare)")
    keep = power >= top * 10.0 ** (STEREO_FLOOR_DB / 10.0)
    eps = top * 1e-12  # far below the floor: only keeps silent channels finite

    def cues(left, right, cross):
        ild = np.clip(10.0 * np.log10((left + eps) / (right + eps)), -ILD_LIMIT_DB, ILD_LIMIT_DB)
        icc = cross / np.maximum(np.sqrt(left * right), eps)
        return ild[keep], np.clip(icc, -1.0, 1.0)[keep]

    return cues(*tiles_r), cues(*tiles_e)


def ild_difference(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Mean |ILD_est - ILD_ref| in dB over the reference's audible tiles (`stereo_tiles`):
    ILD = 10 log10(left power / right power) per tile, bounded to ±`ILD_LIMIT_DB`. How far the
    estimate moves sources across the stereo field. 0 for identical signals."""
    (ild_r, _), (ild_e, _) = _stereo_cues(ref, est, sr, "ild_difference")
    return float(np.mean(np.abs(ild_e - ild_r)))


def icc_difference(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Mean |ICC_est - ICC_ref| over the reference's audible tiles: ICC = Re(L R*) /
    sqrt(|L|^2 |R|^2) per tile, the inter-channel correlation with its sign (1 for a centred
    source, 0 for unrelated channels, -1 for opposite phase), in [0, 2]. How much the estimate
    widens, narrows or phase-shifts the image. 0 for identical signals."""
    (_, icc_r), (_, icc_e) = _stereo_cues(ref, est, sr, "icc_difference")
    return float(np.mean(np.abs(icc_e - icc_r)))


# ---------------------------------------------------------------------------------------------
# Perceptual models (optional packages)


def _mono_at(x: np.ndarray, sr: int, rate: int) -> np.ndarray:
    mono = x.mean(axis=0)
    return mono if sr == rate else soxr.resample(mono, sr, rate, quality="HQ")


@functools.lru_cache(maxsize=2)
def _visqol_api(mode: str):
    visqol_pkg = _require("visqol", "visqol-python", "ViSQOL")
    if not hasattr(visqol_pkg, "VisqolApi"):  # Google's bazel-built `visqol` has another API
        raise MissingDependencyError(
            "the installed `visqol` module is not visqol-python: pip install visqol-python"
        )
    api = visqol_pkg.VisqolApi()
    api.create(mode=mode)
    return api


def visqol(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """ViSQOL v3 MOS-LQO in audio mode (music/general audio; ~4.73 for identical signals).

    Runs the pure-Python port `visqol-python` on the channel mix-down resampled (soxr HQ) to
    48 kHz, as ViSQOL's audio mode expects; about 1.5-2 s per 10 s of audio on one core.
    Raises `MissingDependencyError` when `visqol-python` is not installed.
    """
    sr = _check_rate(sr)
    r, e = _pair(ref, est)
    api = _visqol_api("audio")
    rate = VISQOL_AUDIO_RATE
    result = api.measure_from_arrays(_mono_at(r, sr, rate), _mono_at(e, sr, rate), rate)
    return float(result.moslqo)


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """SPEECH metric: wide-band PESQ (ITU-T P.862.2 MOS-LQO, about 1.0..4.64) via `pesq`.

    On the mix-down resampled to 16 kHz. Designed for speech; on music it is not meaningful.
    NaN when PESQ finds no utterance (silence, non-speech). Raises `MissingDependencyError`
    without the `pesq` package.
    """
    sr = _check_rate(sr)
    r, e = _pair(ref, est)
    pesq_pkg = _require("pesq", "pesq", "PESQ")
    try:
        return float(
            pesq_pkg.pesq(
                SPEECH_RATE, _mono_at(r, sr, SPEECH_RATE), _mono_at(e, sr, SPEECH_RATE), "wb"
            )
        )
    except pesq_pkg.PesqError:
        return math.nan


def stoi(ref: np.ndarray, est: np.ndarray, sr: int, extended: bool = False) -> float:
    """SPEECH metric: short-time objective intelligibility (0..1) via `pystoi`.

    On the mix-down resampled to 16 kHz (pystoi then works at 10 kHz). Designed for speech.
    Raises `MissingDependencyError` without the `pystoi` package.
    """
    sr = _check_rate(sr)
    r, e = _pair(ref, est)
    pystoi = _require("pystoi", "pystoi", "STOI")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns on short signals
        return float(
            pystoi.stoi(
                _mono_at(r, sr, SPEECH_RATE),
                _mono_at(e, sr, SPEECH_RATE),
                SPEECH_RATE,
                extended=extended,
            )
        )


# ---------------------------------------------------------------------------------------------
# All at once

# name -> (function of (ref, est, sr), importable module it needs or None). Speech metrics carry
# a "_speech" suffix so tables never pass them off as music quality.
METRICS: dict[str, tuple[Callable[[np.ndarray, np.ndarray, int], float], str | None]] = {
    "mel_distance": (mel_distance, None),
    "stft_distance": (stft_distance, None),
    "si_sdr": (lambda r, e, sr: si_sdr(r, e), None),
    "loudness_difference": (loudness_difference, "pyloudnorm"),
    "cqt_distance": (cqt_distance, None),
    "chroma_distance": (chroma_distance, None),
    "visqol": (visqol, "visqol"),
    "pesq_wb_speech": (pesq_wb, "pesq"),
    "stoi_speech": (stoi, "pystoi"),
    "mel_distance_mid": (mel_distance_mid, None),
    "mel_distance_side": (mel_distance_side, None),
    "ild_difference": (ild_difference, None),
    "icc_difference": (icc_difference, None),
}
HIGHER_IS_BETTER = frozenset({"si_sdr", "visqol", "pesq_wb_speech", "stoi_speech"})
# Defined for stereo (2-channel) signals only; evaluation rows of other files leave them empty.
STEREO_METRICS = ("mel_distance_mid", "mel_distance_side", "ild_difference", "icc_difference")


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_metrics() -> tuple[str, ...]:
    """Names in `METRICS` whose optional packages are installed."""
    return tuple(n for n, (_, mod) in METRICS.items() if mod is None or _importable(mod))


def compute_all(
    ref: np.ndarray,
    est: np.ndarray,
    sr: int,
    which: str | Sequence[str] | None = None,
) -> dict[str, float]:
    """Metric name -> value for `ref`, `est` (``[T]`` or ``[C, T]``, same shape) at `sr`.

    Args:
      which: metric names from `METRICS` (or one name); None = `available_metrics()`, i.e.
        every metric whose optional package is installed (the `STEREO_METRICS` only for stereo
        signals). Asking for one whose package is missing raises `MissingDependencyError`.

    Raises:
      ValueError: unknown metric, mismatched shapes/lengths, bad signals.
    """
    names = [] if which is None else [which] if isinstance(which, str) else list(which)
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    r, e = _pair(ref, est)  # validate once, up front
    if which is None:
        stereo = r.shape[0] == 2
        names = [n for n in available_metrics() if stereo or n not in STEREO_METRICS]
    sr = _check_rate(sr)
    return {name: float(METRICS[name][0](r, e, sr)) for name in names}
