"""Tests for the built-in procedural music source (jax_codec/data/synthetic.py)."""

import warnings

import numpy as np
import pytest

from jax_codec.data.synthetic import SyntheticMusic, render_song

SR = 22050  # music-likeness checks run at a lower rate to keep librosa fast
ITEMS = range(8)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Eight 2 s mono excerpts, shared by the music-likeness tests."""
    ds = SyntheticMusic(sample_rate=SR, segment_seconds=2.0, seed=0)
    return [ds[i] for i in ITEMS]


def _band_fraction(y: np.ndarray, lo: float, hi: float) -> float:
    power = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1.0 / SR)
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


def _chroma_peakiness(y: np.ndarray) -> float:
    import librosa

    with warnings.catch_warnings():  # tuning estimation warns on near-silent frames
        warnings.simplefilter("ignore")
        chroma = librosa.feature.chroma_cqt(y=y, sr=SR).mean(axis=1)
    return float(chroma.max() / chroma.mean())


def _onsets(y: np.ndarray) -> int:
    import librosa

    return len(librosa.onset.onset_detect(y=y, sr=SR, units="time"))


def test_deterministic_by_seed_and_index():
    ds = SyntheticMusic(sample_rate=16000, seed=3)
    a = ds[5]
    np.testing.assert_array_equal(a, SyntheticMusic(sample_rate=16000, seed=3)[5])
    np.testing.assert_array_equal(a, ds[np.int64(5)])  # grain may pass numpy ints
    assert not np.allclose(a, ds[6])
    assert not np.allclose(a, SyntheticMusic(sample_rate=16000, seed=4)[5])
    np.testing.assert_array_equal(render_song(3.0, 7, 16000), render_song(3.0, 7, 16000))
    assert not np.allclose(render_song(3.0, 7, 16000), render_song(3.0, 8, 16000))


@pytest.mark.parametrize(
    "sample_rate, channels, seconds",
    [(16000, 1, 1.0), (44100, 1, 1.0), (16000, 2, 0.5), (44100, 2, 1.0), (44100, 4, 0.25)],
)
def test_shape_dtype_and_range(sample_rate, channels, seconds):
    ds = SyntheticMusic(sample_rate, seconds, num_examples=10, channels=channels)
    shape = (round(sample_rate * seconds),) + ((channels,) if channels > 1 else ())
    for i in (0, 1, 9, -1):
        x = ds[i]
        assert x.shape == shape and x.dtype == np.float32
        assert np.isfinite(x).all()
        assert np.abs(x).max() <= 0.9 + 1e-6  # headroom, never clipped
        assert np.sqrt(np.mean(x**2)) > 10 ** (-32 / 20)  # not silent
    assert len(ds) == 10
    with pytest.raises(IndexError):
        ds[10]


def test_loudness_varies_within_range():
    ds = SyntheticMusic(sample_rate=16000)
    rms_db = [20 * np.log10(np.sqrt(np.mean(ds[i] ** 2))) for i in range(12)]
    assert -32 < min(rms_db) and max(rms_db) < -9
    assert max(rms_db) - min(rms_db) > 4


def test_stereo_has_width():
    x = SyntheticMusic(sample_rate=16000, channels=2)[2]
    corr = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    assert 0.3 < corr < 0.9999  # related channels, but not a copied mono signal
    assert np.sqrt(np.mean(x**2, axis=0)).min() > 0.01


def test_render_song_shape_and_range():
    song = render_song(6.0, seed=1, sample_rate=16000, channels=2)
    assert song.shape == (96000, 2) and song.dtype == np.float32
    assert np.isfinite(song).all() and np.abs(song).max() <= 0.9 + 1e-6
    quarter_rms = np.sqrt(np.mean(song.reshape(4, -1) ** 2, axis=1))
    assert quarter_rms.min() > 0.01  # sounds all the way through
    method = SyntheticMusic(sample_rate=16000, channels=2).render_song(6.0, 1)
    np.testing.assert_array_equal(method, song)


def test_has_rhythm(clips):
    # Over 300 excerpts of 2 s: median 9 onsets, one excerpt with only 2.
    onsets = [_onsets(y) for y in clips]
    assert min(onsets) >= 3, onsets
    assert _onsets(np.zeros(2 * SR, np.float32)) == 0


def test_has_bass_and_treble(clips):
    # Over 300 excerpts: bass fraction >= 0.025 (median 0.57), treble >= 0.0012 (median 0.07).
    for y in clips:
        assert _band_fraction(y, 20, 200) > 0.01
        assert _band_fraction(y, 2000, SR / 2) > 5e-4
    sine = np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)
    assert _band_fraction(sine, 20, 200) < 0.01 and _band_fraction(sine, 2000, SR / 2) < 5e-4


def test_has_pitch_content(clips):
    # Measured over 300 excerpts: min 1.25, median 2.05; white noise gives 1.04-1.07.
    peakiness = [_chroma_peakiness(y) for y in clips]
    assert min(peakiness) > 1.2, peakiness
    noise = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1
    assert _chroma_peakiness(noise) < 1.2


def test_items_vary(clips):
    import librosa

    centroids = [librosa.feature.spectral_centroid(y=y, sr=SR).mean() for y in clips]
    assert np.std(centroids) / np.mean(centroids) > 0.15, centroids
    tempos = {round(float(librosa.feature.tempo(y=y, sr=SR)[0])) for y in clips}
    assert len(tempos) >= 4, tempos
    songs = [render_song(1.0, s, 16000) for s in range(4)]
    assert len({round(float(np.sqrt(np.mean(s**2))), 4) for s in songs}) == 4


def test_grain_source():
    grain = pytest.importorskip("grain")
    ds = SyntheticMusic(sample_rate=16000, segment_seconds=0.25, num_examples=6)
    batches = grain.MapDataset.source(ds).batch(3)
    assert len(batches) == 2
    batch = batches[1]
    assert batch.shape == (3, 4000)
    np.testing.assert_array_equal(batch[0], ds[3])
