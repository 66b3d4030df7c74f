"""Signal level: one definition for training crops, the encoder's input and its output.

A codec trained on music at whatever level the files happen to have learns an average level
and gives it back whatever it is fed: a quiet track returns loud, hiss included, and a loud
one returns quiet. DAC's recipe avoids that at both ends: every training excerpt is
normalized to one loudness, and `compress` normalizes the input to that loudness, stores the
input's loudness, and its decompressor brings the reconstruction back to it. This module is
ours of that:

- `level_db`: the level of ``[C, T]`` (or ``[T]``, or ``[T, C]`` with ``channels_last``) in
  dB relative to full scale: the mean square over all channels, gated as in ITU-R BS.1770
  (400 ms blocks starting every 100 ms; blocks below -70 dB are dropped, then those more than
  10 dB under the mean of the rest), without BS.1770's K-weighting. A signal shorter than a
  block is one block. It works for a 0.2 s training crop and a whole file alike, which
  BS.1770's integrated loudness (0.4 s at least) does not; for music it lies about 1-3 dB
  below the LUFS value.
- `LevelMeter`: the same for a signal fed in blocks, and (``loudness=True``) its K-weighted
  counterpart, BS.1770's integrated loudness up to a constant, with which the encoder
  matches the decoded loudness to the input's.
- `normalize`: scales a signal to a target level, with the peak kept at or below a limit
  (the gain is lowered rather than clipping); returns the gain it applied.

`data.normalize_db` (configs/common.py) is the target (`target_db`): the training pipeline
normalizes each crop to it before augmentation, and `inference.codec_io.encode_to_jcodec`
normalizes the input to it and stores the gain that undoes it (plus a loudness correction) in
the `.jcodec` header (format version 3, `gain_db`). `data.normalize = False` leaves levels as
they are (the imported EnCodec and SNAC presets, whose originals were trained that way).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BLOCK_SECONDS",
    "SILENCE_DB",
    "LevelMeter",
    "db_to_gain",
    "k_weighting",
    "level_db",
    "normalize",
    "normalizing_gain",
    "target_db",
]

STEP_SECONDS = 0.1  # gating blocks are 4 steps long (400 ms) and start every step (75 % overlap)
BLOCK_STEPS = 4
BLOCK_SECONDS = STEP_SECONDS * BLOCK_STEPS
SILENCE_DB = -70.0  # BS.1770's absolute gate; also what an all-zero signal reports
RELATIVE_GATE_DB = 10.0


def db_to_gain(db: float) -> float:
    return float(10.0 ** (float(db) / 20.0))


def target_db(config) -> float | None:
    """The level a model's input is normalized to: `data.normalize_db` of its config, or None
    when `data.normalize` is off (or the config predates it)."""
    data = config.get("data", None) if hasattr(config, "get") else None
    if data is None or not data.get("normalize", False):
        return None
    return float(data.normalize_db)


class _StepSums:
    """Per-sample powers summed over steps of `step` samples, fed in pieces; gated mean."""

    def __init__(self, step: int):
        self.step = step
        self.sums: list[float] = []  # complete steps
        self.part = 0.0  # the incomplete step at the end
        self.part_n = 0

    def add(self, power: np.ndarray) -> None:
        take = min(self.step - self.part_n, power.shape[0])
        self.part += float(power[:take].sum())
        self.part_n += take
        power = power[take:]
        if self.part_n == self.step:
            self.sums.append(self.part)
            whole = power.shape[0] // self.step * self.step
            self.sums.extend(power[:whole].reshape(-1, self.step).sum(axis=1).tolist())
            self.part, self.part_n = float(power[whole:].sum()), power.shape[0] - whole

    def gated_db(self) -> float:
        n = len(self.sums) * self.step + self.part_n
        if len(self.sums) < BLOCK_STEPS:  # shorter than one block: the whole signal
            p = np.array([(sum(self.sums) + self.part) / n]) if n else np.zeros(1)
        else:
            c = np.concatenate([[0.0], np.cumsum(self.sums)])
            p = (c[BLOCK_STEPS:] - c[:-BLOCK_STEPS]) / (BLOCK_STEPS * self.step)
        p = p[p > 10.0 ** (SILENCE_DB / 10.0)]
        if p.size == 0:
            return SILENCE_DB
        p = p[p > p.mean() * 10.0 ** (-RELATIVE_GATE_DB / 10.0)]
        return float(10.0 * math.log10(p.mean()))


def k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """BS.1770's K-weighting at `sample_rate` as (b, a) biquads: pyloudnorm's high shelf
    (+4 dB above ~1.5 kHz) and high pass (38 Hz)."""
    from pyloudnorm.iirfilter import IIRfilter

    stages = (
        IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf"),
        IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    )
    return [(np.asarray(f.b, np.float64), np.asarray(f.a, np.float64)) for f in stages]


class LevelMeter:
    """`level_db` and the peak of a signal fed in blocks ``[C, n]`` (bounded memory: one
    number per 100 ms), and with `loudness` its K-weighted counterpart: BS.1770-4's
    integrated loudness up to a constant (``loudness_db() = LUFS + 0.691 - 10 log10(C)`` for
    one or two channels: this meter averages the channels' power where BS.1770 sums it), for
    comparing two signals of the same channel count."""

    def __init__(self, sample_rate: int, loudness: bool = False):
        self.sample_rate = int(sample_rate)
        step = max(1, int(round(STEP_SECONDS * sample_rate)))
        self.plain = _StepSums(step)
        self.weighted = _StepSums(step) if loudness else None
        self.filters = k_weighting(self.sample_rate) if loudness else None
        self.states = None  # lfilter states per stage, [C, 2] each
        self.peak = 0.0

    def add(self, x: np.ndarray) -> None:
        a = np.asarray(x)
        if a.ndim == 1:
            a = a[None]
        if a.size == 0:
            return
        self.peak = max(self.peak, float(np.max(np.abs(a))))
        self.plain.add(np.mean(np.square(a, dtype=np.float64), axis=0))
        if self.weighted is not None:
            import scipy.signal

            if self.states is None:
                self.states = [np.zeros((a.shape[0], 2)) for _ in self.filters]
            k = a.astype(np.float64)
            for i, (b, den) in enumerate(self.filters):
                k, self.states[i] = scipy.signal.lfilter(b, den, k, axis=1, zi=self.states[i])
            self.weighted.add(np.mean(np.square(k), axis=0))

    @property
    def num_samples(self) -> int:
        return len(self.plain.sums) * self.plain.step + self.plain.part_n

    def level_db(self) -> float:
        """Gated mean-square level in dBFS (`SILENCE_DB` for silence)."""
        return self.plain.gated_db()

    def loudness_db(self) -> float:
        """The same gating on the K-weighted signal (needs ``loudness=True``)."""
        if self.weighted is None:
            raise ValueError("this LevelMeter was made without loudness=True")
        return self.weighted.gated_db()


def level_db(x: np.ndarray, sample_rate: int, channels_last: bool = False) -> float:
    """Gated mean-square level of `x` in dBFS (`SILENCE_DB` for silence); see the module doc."""
    a = np.asarray(x)
    if a.ndim == 2 and channels_last:
        a = a.T
    if a.ndim not in (1, 2):
        raise ValueError(f"level_db takes [T] or [C, T] audio, got shape {np.shape(x)}")
    meter = LevelMeter(sample_rate)
    meter.add(a)
    return meter.level_db()


def normalizing_gain(level: float, peak: float, target: float, peak_limit: float = 0.99) -> float:
    """The gain in dB that brings a signal of `level` (dBFS) to `target`, lowered so that
    `peak` stays at or below `peak_limit`; 0 for silence."""
    if level <= SILENCE_DB:
        return 0.0
    gain = float(target) - float(level)
    if peak > 0.0 and peak * db_to_gain(gain) > peak_limit:
        gain = 20.0 * math.log10(peak_limit / peak)
    return gain


def normalize(
    x: np.ndarray,
    sample_rate: int,
    target_db: float,
    peak_limit: float = 0.99,
    channels_last: bool = False,
) -> tuple[np.ndarray, float]:
    """(`x` scaled to `target_db` by `level_db`, the gain applied in dB), float32. The gain is
    lowered so the peak stays at or below `peak_limit`; a silent signal is returned as it
    is, with gain 0."""
    a = np.asarray(x, dtype=np.float32)
    level = level_db(a, sample_rate, channels_last)
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    gain = normalizing_gain(level, peak, target_db, peak_limit)
    return (a * np.float32(db_to_gain(gain)) if gain else a), gain
