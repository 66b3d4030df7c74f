"""Stereo: the mid/side transform of joint-stereo codecs, and matching channel counts.

A joint-stereo codec (`model.channels = 2`) codes both channels of a pair in one code stream.
`model.stereo` says which pair its convolutions see: "lr" (left, right) or "ms" (mid
`M = (L + R) / 2` and side `S = (L - R) / 2`, so `L = M + S`, `R = M - S`); docs/stereo.md
says why. Audio is channels-last, `[..., T, C]`.

`match_channels` is what the public API does when the audio's channel count is not the
model's: a mono signal given to a stereo model is duplicated (`L = R`, no side), a stereo
signal given to a mono model is mixed down to `(L + R) / 2`, and more than two channels go to
a stereo model as the mean of the odd (L, C, Ls, ...) and even (R, ...) channels. `Codec`
itself never converts: a wrong channel count is an error there.

Functions take NumPy or JAX arrays and return the same kind (JAX is imported only for JAX
arrays, so the data pipeline can use this module without it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

STEREO_MODES = ("lr", "ms")
# The four mono signals the stereo reconstruction losses see, in `loss.stereo_weights` order.
STEREO_SIGNALS = ("left", "right", "mid", "side")


def _xp(x: Any):
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def to_mid_side(x: Any) -> Any:
    """`[..., T, 2]` left/right -> mid/side: `M = (L + R) / 2`, `S = (L - R) / 2`."""
    left, right = x[..., 0:1], x[..., 1:2]
    return _xp(x).concatenate([(left + right) * 0.5, (left - right) * 0.5], axis=-1)


def from_mid_side(x: Any) -> Any:
    """`[..., T, 2]` mid/side -> left/right: `L = M + S`, `R = M - S` (exact for PCM-valued
    audio, where every step is exact in float32; otherwise within a rounding)."""
    mid, side = x[..., 0:1], x[..., 1:2]
    return _xp(x).concatenate([mid + side, mid - side], axis=-1)


def stereo_signals(x: Any) -> Any:
    """`[..., T, 2]` left/right -> `[4, ..., T]`: left, right, mid, side (`STEREO_SIGNALS`)."""
    ms = to_mid_side(x)
    return _xp(x).stack([x[..., 0], x[..., 1], ms[..., 0], ms[..., 1]])


def match_channels(audio: Any, channels: int) -> Any:
    """`[..., T, C]` -> `[..., T, channels]`: unchanged when C already is `channels`; mono
    duplicated; mixed down by averaging to mono; more than two channels to stereo as the mean
    of the odd and of the even channels (left and right of the usual layouts)."""
    c = audio.shape[-1]
    if c == channels:
        return audio
    if channels < 1 or c < 1:
        raise ValueError(f"cannot convert {c} channels to {channels}")
    xp = _xp(audio)
    if channels == 1:
        return audio.mean(axis=-1, keepdims=True)
    if c == 1:
        return xp.repeat(audio, channels, axis=-1)
    if channels == 2:
        left = audio[..., 0::2].mean(axis=-1)
        right = audio[..., 1::2].mean(axis=-1)
        return xp.stack([left, right], axis=-1)
    raise ValueError(f"cannot convert {c} channels to {channels}")
