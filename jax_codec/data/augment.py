"""Training-time augmentation of one crop: gain, polarity, mixing two clips, mild EQ.

All randomness comes from the `np.random.Generator` the pipeline derives from (seed, element
index), so an augmented batch is reproduced exactly on resume. Settings live in
`config.data.augment`; evaluation never augments.

- gain: a uniform draw in ``gain_db`` (dB), applied before a peak limit;
- polarity: flip the sign with ``polarity_prob`` (codecs must not care; it costs nothing);
- mix: with ``mix_prob``, add a second crop at a relative level drawn in ``mix_db``
  (denser signals, the hard case for a codec);
- EQ: with ``eq_prob``, one RBJ peaking biquad at a log-uniform centre 100 Hz - 8 kHz, gain within
  ``+-eq_db`` and Q in 0.7-2 (mild tonal variety without colouring the data);
- swap: with ``swap_prob``, exchange the left and right channels of a stereo crop (a joint-stereo
  model should not prefer a side); every other augmentation treats both channels alike, so the
  stereo image is kept;
- mono: with ``mono_prob``, replace both channels of a stereo crop by their mean (L = R), so
  that a joint-stereo model meets a silent side (one trained on wide mixes decodes near-mono
  passages with a side of its own, which a dual-mono codec never adds); off by default, see
  docs/stereo.md for what it did;
- gap: with ``gap_prob``, silence a span of the crop (a fraction of it drawn in
  ``gap_fraction``, anywhere in it), with ``gap_fade_ms`` raised-cosine fades into and out of
  it. Crops are redrawn when silent and normalized to one level, so without gaps a model
  rarely meets silence, and decodes it to a buzz at its frame rate (benchmarks/idle_output.py).
  ``gap_depth_db`` (None: digital silence) attenuates the span by that many dB instead, so its
  target stays above the log-spectral losses' floor (near which any output costs a lot);
- finally the peak is limited to ``peak_limit`` by scaling, so augmentation never clips.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
import numpy as np
import scipy.signal


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.enabled = True
    c.gain_db = (-6.0, 3.0)
    c.polarity_prob = 0.5
    c.mix_prob = 0.0
    c.mix_db = (-9.0, 0.0)
    c.eq_prob = 0.25
    c.eq_db = 3.0
    c.peak_limit = 0.99
    # Probability of swapping left and right in a stereo crop (no effect on mono crops).
    c.swap_prob = 0.0
    # Probability of silencing a span of the crop (a fraction in gap_fraction), with fades.
    c.gap_prob = 0.0
    # Probability of making a stereo crop mono (both channels their mean; no effect on mono).
    c.mono_prob = 0.0
    c.gap_fraction = (0.1, 0.5)
    c.gap_fade_ms = 10.0
    # None: the span is digital silence; a number (dB, below 0): the span is attenuated by it.
    c.gap_depth_db = ml_collections.config_dict.placeholder(float)
    return c


def check_config(cfg: ml_collections.ConfigDict) -> str | None:
    """What is wrong with the augmentation settings (a message after `data.augment.`), or None."""
    for name in ("gap_prob", "mono_prob", "swap_prob"):
        p = float(cfg.get(name, 0.0))
        if not 0.0 <= p <= 1.0:
            return f"{name}={p:g}: a probability, 0 (off) to 1"
    lo, hi = (float(v) for v in cfg.get("gap_fraction", (0.1, 0.5)))
    if not 0.0 < lo <= hi < 1.0:
        return (
            f"gap_fraction=({lo:g}, {hi:g}): (low, high) fractions of the crop, 0 < low <= high < 1"
        )
    if float(cfg.get("gap_fade_ms", 10.0)) < 0:
        return f"gap_fade_ms={cfg.gap_fade_ms:g}: a fade length in ms, 0 or more"
    depth = cfg.get("gap_depth_db", None)
    if depth is not None:
        depth = float(depth)
        if not (np.isfinite(depth) and depth < 0):
            return f"gap_depth_db={depth:g}: None (digital silence) or a level in dB below 0"
    return None


def silence_span(
    x: np.ndarray, start: int, length: int, fade: int, gain: float = 0.0
) -> np.ndarray:
    """`x` ``[T, C]`` with samples [start, start + length) scaled by `gain` (0: silenced) and
    `fade`-sample raised-cosine fades between 1 and `gain` just outside that span (cut to the
    crop), in place."""
    t = x.shape[0]
    x[start : start + length] *= x.dtype.type(gain)
    if fade > 0:
        ramp = 0.5 + 0.5 * np.cos(np.pi * (np.arange(1, fade + 1) / (fade + 1)))
        ramp = (gain + (1.0 - gain) * ramp).astype(x.dtype)  # 1 -> gain
        a = max(0, start - fade)  # fade out before the gap
        x[a:start] *= ramp[fade - (start - a) :][:, None]
        b = min(t, start + length + fade)  # fade in after it
        x[start + length : b] *= ramp[::-1][: b - start - length][:, None]
    return x


def peaking_biquad(freq: float, gain_db: float, q: float, sample_rate: int) -> tuple:
    """(b, a) of the RBJ audio-EQ-cookbook peaking filter."""
    a_lin = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2.0 * q)
    b = np.array([1 + alpha * a_lin, -2 * np.cos(w0), 1 - alpha * a_lin])
    a = np.array([1 + alpha / a_lin, -2 * np.cos(w0), 1 - alpha / a_lin])
    return b / a[0], a / a[0]


def augment(
    x: np.ndarray,
    rng: np.random.Generator,
    cfg: ml_collections.ConfigDict,
    sample_rate: int,
    other: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """Augment float32 ``[T, C]`` `x`; `other()` returns a second crop for mixing."""
    if not cfg.enabled:
        return x
    x = x.astype(np.float32, copy=True)
    # Draw every random number in a fixed order, whatever is enabled, so toggling one
    # augmentation does not change the draws of the others.
    gain = rng.uniform(*cfg.gain_db)
    flip = rng.random() < cfg.polarity_prob
    mix = rng.random() < cfg.mix_prob
    mix_db = rng.uniform(*cfg.mix_db)
    eq = rng.random() < cfg.eq_prob
    eq_freq = float(np.exp(rng.uniform(np.log(100.0), np.log(min(8000.0, 0.4 * sample_rate)))))
    eq_gain = rng.uniform(-cfg.eq_db, cfg.eq_db)
    eq_q = rng.uniform(0.7, 2.0)
    swap = rng.random() < cfg.get("swap_prob", 0.0)  # drawn after the above: they are unchanged
    gap = rng.random() < cfg.get("gap_prob", 0.0)
    gap_fraction = rng.uniform(*cfg.get("gap_fraction", (0.1, 0.5)))
    gap_where = rng.random()
    mono = rng.random() < cfg.get("mono_prob", 0.0)  # after the gap's draws: they are unchanged
    if mix and other is not None:
        y = other()
        rx = np.sqrt(np.mean(np.square(x)) + 1e-12)
        ry = np.sqrt(np.mean(np.square(y)) + 1e-12)
        x = x + y * (rx / ry) * 10.0 ** (mix_db / 20.0)
    if eq:
        b, a = peaking_biquad(eq_freq, eq_gain, eq_q, sample_rate)
        x = scipy.signal.lfilter(b, a, x, axis=0).astype(np.float32)
    if swap and x.shape[1] == 2:
        x = np.ascontiguousarray(x[:, ::-1])
    if mono and x.shape[1] == 2:
        x[:] = x.mean(axis=1, keepdims=True)
    if gap:
        length = int(round(gap_fraction * x.shape[0]))
        start = int(gap_where * (x.shape[0] - length))
        fade = int(round(cfg.get("gap_fade_ms", 10.0) * 1e-3 * sample_rate))
        depth = cfg.get("gap_depth_db", None)
        floor = 0.0 if depth is None else 10.0 ** (float(depth) / 20.0)
        silence_span(x, start, length, fade, floor)
    x *= np.float32(10.0 ** (gain / 20.0) * (-1.0 if flip else 1.0))
    peak = float(np.abs(x).max(initial=0.0))
    if peak > cfg.peak_limit:
        x *= np.float32(cfg.peak_limit / peak)
    return x
