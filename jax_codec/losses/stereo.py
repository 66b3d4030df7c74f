"""Stereo-image loss: inter-channel level and correlation differences, per time-frequency tile.

Log-mel L1 on the left, right, mid and side signals trains each signal's spectrum, but the
errors of the two channels are free to differ: a decoded pair can have each channel's spectrum
nearly right and still move sources across the stereo field (left and right errors that do not
cancel in the level ratio) or widen it (channels less correlated than the input's). This loss
trains the two cues the evaluation measures (`jax_codec.evaluation.metrics.ild_difference` and
`icc_difference`) directly, on tiles of a few STFT frames pooled into mel bands:

- ILD: |log10(L/R)_pred - log10(L/R)_target| (one log10 unit is 10 dB);
- ICC: |Re(L R*) / sqrt(|L|^2 |R|^2)|_pred - the same of the target|.

Quiet tiles count less through a floor relative to each signal's loudest tile (their ILD and
ICC tend to 0), so silence does not dominate.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jax_codec.losses.spectral import _PRECISION, mel_filterbank, stft

Array = jax.Array


def stereo_tiles(x: Array, sample_rate: int, n_fft: int, n_bands: int, tile_frames: int) -> Array:
    """`[B, T, 2]` -> `[3, B, tiles, n_bands]`: left power, right power and cross power
    Re(L R*) per tile of `tile_frames` frames (hop `n_fft // 4`) and mel band."""
    spec = stft(jnp.moveaxis(x, -1, 0), n_fft, n_fft // 4)  # [2, B, F, bins]
    left, right = spec[0], spec[1]
    per_frame = jnp.stack(
        [
            jnp.real(left) ** 2 + jnp.imag(left) ** 2,
            jnp.real(right) ** 2 + jnp.imag(right) ** 2,
            jnp.real(left) * jnp.real(right) + jnp.imag(left) * jnp.imag(right),
        ]
    )  # [3, B, F, bins]
    frames = per_frame.shape[2]
    tiles = -(-frames // tile_frames)
    pad = tiles * tile_frames - frames
    per_frame = jnp.pad(per_frame, ((0, 0), (0, 0), (0, pad), (0, 0)))
    pooled = per_frame.reshape(*per_frame.shape[:2], tiles, tile_frames, -1).sum(axis=3)
    basis = jnp.asarray(mel_filterbank(int(sample_rate), n_fft, n_bands))
    return jnp.matmul(pooled, basis.T, precision=_PRECISION)


def _cues(left: Array, right: Array, cross: Array, floor_db: float) -> tuple[Array, Array]:
    """(ILD in log10 units, ICC) per tile, with a floor `floor_db` below the signal's own
    loudest tile (per example, either channel) added to both powers."""
    top = jax.lax.stop_gradient(jnp.max(jnp.maximum(left, right), axis=(1, 2), keepdims=True))
    eps = top * 10.0 ** (floor_db / 10.0) + 1e-20
    return (
        jnp.log10((left + eps) / (right + eps)),
        cross / jnp.sqrt((left + eps) * (right + eps)),
    )


def stereo_image_loss(
    pred: Array,
    target: Array,
    sample_rate: int,
    window_lengths: Sequence[int] = (2048, 512),
    n_bands: int = 40,
    tile_frames: int = 4,
    floor_db: float = -60.0,
) -> Array:
    """ILD L1 (log10 units) plus ICC L1 of stereo `pred` against `target`, both `[B, T, 2]`,
    summed over STFT resolutions -> scalar. 0 for identical signals; unchanged by a common
    gain of both channels of `pred`."""
    if pred.shape[-1] != 2 or target.shape[-1] != 2:
        raise ValueError(f"stereo_image_loss needs [B, T, 2] signals, got {pred.shape}")
    target = jax.lax.stop_gradient(target)
    total = 0.0
    for n_fft in window_lengths:
        lp, rp, cp = stereo_tiles(pred, sample_rate, n_fft, n_bands, tile_frames)
        lt, rt, ct = stereo_tiles(target, sample_rate, n_fft, n_bands, tile_frames)
        ild_p, icc_p = _cues(lp, rp, cp, floor_db)
        ild_t, icc_t = _cues(lt, rt, ct, floor_db)
        total = total + jnp.mean(jnp.abs(ild_p - ild_t)) + jnp.mean(jnp.abs(icc_p - icc_t))
    return total
