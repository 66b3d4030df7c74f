"""`jax_codec.levels`: the gated level, its streaming meter and normalization."""

import numpy as np
import pytest

from jax_codec import levels

SR = 16000


def sine(seconds, amp=0.5, freq=440.0, sr=SR):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_level_of_known_signals():
    # a sine's mean square is amp**2 / 2
    assert levels.level_db(sine(2.0, 0.5), SR) == pytest.approx(
        20 * np.log10(0.5) - 3.0103, abs=1e-3
    )
    # [C, T] averages the channels' power; [T, C] with channels_last is the same signal
    x = np.stack([sine(1.0, 0.5), np.zeros(SR, np.float32)])
    want = 10 * np.log10(0.5**2 / 2 / 2)
    assert levels.level_db(x, SR) == pytest.approx(want, abs=1e-3)
    assert levels.level_db(x.T, SR, channels_last=True) == pytest.approx(want, abs=1e-3)
    # shorter than a 400 ms block: one block, the plain mean square
    assert levels.level_db(sine(0.05, 0.1), SR) == pytest.approx(
        20 * np.log10(0.1) - 3.01, abs=0.05
    )
    assert levels.level_db(np.zeros(SR), SR) == levels.SILENCE_DB
    assert levels.level_db(np.zeros(0), SR) == levels.SILENCE_DB
    with pytest.raises(ValueError, match=r"\[T\] or \[C, T\]"):
        levels.level_db(np.zeros((1, 2, 3)), SR)


def test_gating_ignores_silence_and_quiet_passages():
    """Silence, or a passage 30 dB down, beside music hardly moves the level (BS.1770 gating);
    an ungated mean square would fall by 3 dB for the silence."""
    loud = sine(3.0, 0.5)
    base = levels.level_db(loud, SR)
    with_silence = np.concatenate([loud, np.zeros_like(loud)])
    assert levels.level_db(with_silence, SR) == pytest.approx(base, abs=0.3)
    with_quiet = np.concatenate([loud, 0.03 * loud])
    assert levels.level_db(with_quiet, SR) == pytest.approx(base, abs=0.3)


def test_meter_fed_in_blocks_equals_the_whole():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 3 * SR + 123)) * np.linspace(0.01, 0.3, 3 * SR + 123)).astype(
        np.float32
    )
    m = levels.LevelMeter(SR)
    i = 0
    for n in rng.integers(1, 5000, 100):
        m.add(x[:, i : i + n])
        i += n
        if i >= x.shape[1]:
            break
    m.add(x[:, i:])
    assert m.num_samples == x.shape[1]
    assert m.level_db() == pytest.approx(levels.level_db(x, SR), abs=1e-9)
    assert m.peak == np.abs(x).max()


def test_normalize_hits_the_target_and_respects_the_peak():
    x = sine(1.0, 0.01)
    y, gain = levels.normalize(x, SR, -18.0)
    assert levels.level_db(y, SR) == pytest.approx(-18.0, abs=1e-4)
    assert gain == pytest.approx(-18.0 - levels.level_db(x, SR))
    # a spiky signal: the gain stops where the peak reaches the limit
    spiky = np.zeros(SR, np.float32)
    spiky[::400] = 0.5
    y, gain = levels.normalize(spiky, SR, -3.0, peak_limit=0.9)
    assert np.abs(y).max() == pytest.approx(0.9, rel=1e-6)
    assert levels.level_db(y, SR) < -3.0
    # silence is left alone
    z, gain = levels.normalize(np.zeros(100, np.float32), SR, -18.0)
    assert gain == 0.0 and not z.any()


def test_target_comes_from_the_config():
    from jax_codec.config import load_config

    c = load_config("configs/base.py:runlocal")
    assert levels.target_db(c) == c.data.normalize_db
    with c.unlocked():
        c.data.normalize = False
    assert levels.target_db(c) is None
    # a config from before normalization existed (an older checkpoint): no normalization
    old = c.to_dict()
    del old["data"]["normalize"]
    import ml_collections

    assert levels.target_db(ml_collections.ConfigDict(old)) is None


def test_loudness_meter_is_bs1770_up_to_a_constant():
    """`LevelMeter(loudness=True)` fed in blocks = pyloudnorm's integrated loudness + 0.691 -
    10 log10(C) (it averages channel power where BS.1770 sums it)."""
    pyln = pytest.importorskip("pyloudnorm")
    rng = np.random.default_rng(3)
    sr = 44100
    t = np.arange(3 * sr) / sr
    x = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 100 * t) * (t < 2),  # bass, then silence (gated out)
            0.05 * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * 3000 * t),
        ]
    ).astype(np.float32)
    m = levels.LevelMeter(sr, loudness=True)
    for i in range(0, x.shape[1], 10007):
        m.add(x[:, i : i + 10007])
    want = pyln.Meter(sr).integrated_loudness(x.T)
    assert m.loudness_db() - 0.691 + 10 * np.log10(2) == pytest.approx(want, abs=1e-3)
    assert m.level_db() == pytest.approx(levels.level_db(x, sr), abs=1e-9)
    with pytest.raises(ValueError, match="loudness=True"):
        levels.LevelMeter(sr).loudness_db()
