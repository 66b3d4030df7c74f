"""Stereo image metrics: mid and side mel distances, inter-channel level and correlation cues.

Signals are float ``[2, T]``, reference first, estimate second, of the same length; other
channel counts raise `ValueError`.
`jax_codec.evaluation.metrics` re-exports the names here and `compute_all` runs them (the
`STEREO_METRICS`) for stereo signals; import them from there.

`mel_distance_mid` and `mel_distance_side` are `mel_distance` on the mid `(L + R) / 2` and on
the side `(L - R) / 2` (the side's is what a codec that drops the stereo image loses);
`ild_difference` and `icc_difference` compare the inter-channel level difference (dB) and the
inter-channel correlation (phase-sensitive, -1..1) of reference and estimate per
time-frequency tile (`stereo_tiles`): 40 mel bands of a 2048-point STFT (hop 512), pooled over
16 frames, tiles quieter than 60 dB below the reference's loudest ignored. These are the usual
cues of parametric stereo coding (the ILD and ICC of MPEG parametric stereo), measured, not
coded.
"""

from __future__ import annotations

import numpy as np

from jax_codec.evaluation.spectral_distances import (
    _check_rate,
    _pair,
    _stft_blocks,
    as_channels_first,
    mel_distance,
)
from jax_codec.losses.spectral import mel_filterbank

# Stereo image metrics (`ild_difference`, `icc_difference`): STFT size (hop a quarter), mel
# bands, frames pooled per tile (~190 ms at 44.1 kHz), the level below the reference's loudest
# tile under which tiles are ignored, and the bound on an ILD (a silent channel's is infinite).
STEREO_N_FFT = 2048
STEREO_BANDS = 40
STEREO_TILE_FRAMES = 16
STEREO_FLOOR_DB = -60.0
ILD_LIMIT_DB = 40.0

# Defined for stereo (2-channel) signals only; evaluation rows of other files leave them empty.
STEREO_METRICS = ("mel_distance_mid", "mel_distance_side", "ild_difference", "icc_difference")


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
