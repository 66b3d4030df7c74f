"""Objective audio-quality metrics for codec evaluation (numpy/scipy/librosa, deterministic).

Signals are float ``[T]`` (mono) or ``[C, T]`` (channels first, as `jax_codec.inference` reads
files), reference first, estimate (the decoded audio) second; both must have the same shape
(`ValueError` otherwise: align and trim before measuring). Lower is better for the distances,
higher for SI-SDR, ViSQOL, PESQ and STOI. This module is where every metric is imported from;
two groups are defined next door and re-exported here:

- `mel_distance`, `stft_distance`: exactly descript-audio-codec's `MelSpectrogramLoss` and
  `MultiScaleSTFTLoss` with DAC's configuration, at the sample rate given; defined, with the
  input checks every metric shares, in `jax_codec.evaluation.spectral_distances`.
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
- Stereo image (2-channel signals only; `STEREO_METRICS`, a `ValueError` for other channel
  counts): `mel_distance_mid`, `mel_distance_side`, `ild_difference`, `icc_difference`, the
  mid/side mel distances and the inter-channel level and correlation differences per
  time-frequency tile; defined in `jax_codec.evaluation.stereo_metrics`.

Codebook usage (which codes a codec's quantizers use) is `jax_codec.evaluation.codebook_usage`.

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

# Re-exported: `metrics` is where every metric is imported from.
from jax_codec.evaluation.spectral_distances import (  # noqa: F401
    CLAMP_EPS,
    LOG_WEIGHT,
    MEL_MAG_WEIGHT,
    MEL_N_MELS,
    MEL_POWER,
    MEL_WINDOW_LENGTHS,
    STFT_MAG_WEIGHT,
    STFT_POWER,
    STFT_WINDOW_LENGTHS,
    _check_rate,
    _log_clamped,
    _pair,
    as_channels_first,
    mel_distance,
    stft_distance,
)
from jax_codec.evaluation.stereo_metrics import (  # noqa: F401
    ILD_LIMIT_DB,
    STEREO_BANDS,
    STEREO_FLOOR_DB,
    STEREO_METRICS,
    STEREO_N_FFT,
    STEREO_TILE_FRAMES,
    icc_difference,
    ild_difference,
    mel_distance_mid,
    mel_distance_side,
    stereo_tiles,
)

# Identical signals have no residual: SI-SDR is capped here so means and intervals stay finite.
SI_SDR_MAX_DB = 200.0

# Constant-Q settings of `cqt_distance`/`chroma_distance` (librosa's chroma_cqt defaults).
CQT_HOP = 512
CQT_BINS_PER_OCTAVE = 36
CQT_OCTAVES = 7
CQT_FMIN = 32.703195662574764  # C1

VISQOL_AUDIO_RATE = 48000
SPEECH_RATE = 16000


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
