"""Evaluation metrics (jax_codec.evaluation.metrics) and classic-codec baselines (.baselines).

Known answers: identical signals, a hand-computed SI-SDR, gains with closed-form distances,
delay/noise moving each metric the right way; agreement with descript-audio-codec's own mel and
STFT losses when it is installed; ffmpeg round trips that keep length and channels, stay time
aligned and spend about the bitrate asked for (skipped without ffmpeg).
"""

from __future__ import annotations

import math
import shutil
import sys
import types

import numpy as np
import pytest

from jax_codec.evaluation import baselines, codebook_usage, metrics

SR = 16000


def music(seconds: float = 2.0, sr: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Deterministic music-like test signal ``[C, T]``: three harmonic notes with tremolo and
    a little noise; channels get different notes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    out = []
    for c in range(channels):
        x = np.zeros_like(t)
        for k, f0 in enumerate((220.0 * 1.5**c, 277.2, 329.6)):
            env = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + k) * t + k) ** 2
            for h in range(1, 6):
                x += env * np.sin(2 * np.pi * f0 * h * t + h) / (h * 6)
        out.append(x + 0.003 * rng.standard_normal(t.size))
    return np.stack(out).astype(np.float32)


def noisy(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.shape)
    n *= np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))
    return (x + n).astype(np.float32)


def lag_of(ref: np.ndarray, est: np.ndarray, max_lag: int = 2000) -> int:
    """Lag (samples) of the cross-correlation peak of `est` against `ref` (positive: late)."""
    n = len(ref)
    c = np.fft.irfft(np.fft.rfft(est, 2 * n) * np.conj(np.fft.rfft(ref, 2 * n)), 2 * n)
    c = np.concatenate([c[-max_lag:], c[: max_lag + 1]])
    return int(np.argmax(c)) - max_lag


# ---------------------------------------------------------------------------------------------
# Metrics: known answers


def test_identical_signals_give_zero_distances_and_max_si_sdr():
    x = music(channels=2)
    r = metrics.compute_all(
        x,
        x.copy(),
        SR,
        which=["mel_distance", "stft_distance", "cqt_distance", "chroma_distance", "si_sdr"],
    )
    for name in ("mel_distance", "stft_distance", "cqt_distance", "chroma_distance"):
        assert r[name] == 0.0, name
    assert r["si_sdr"] == metrics.SI_SDR_MAX_DB


def test_si_sdr_hand_computed_and_invariances():
    ref = np.array([1.0, -1.0, 1.0, -1.0])
    est = np.array([2.0, -1.0, 1.0, -2.0])
    # a = <e, r> / <r, r> = 6 / 4; target = 1.5 r (energy 9); noise = e - 1.5 r (energy 1).
    assert metrics.si_sdr(ref, est) == pytest.approx(10 * math.log10(9.0), abs=1e-12)
    assert metrics.si_sdr(ref, 3.7 * est) == pytest.approx(metrics.si_sdr(ref, est), abs=1e-9)
    assert metrics.si_sdr(ref + 5.0, est - 2.0) == pytest.approx(10 * math.log10(9.0), abs=1e-9)
    assert math.isnan(metrics.si_sdr(np.ones(4), est))  # constant reference: undefined
    x = music()
    y = noisy(x, 20.0)
    assert metrics.si_sdr(x, y) == pytest.approx(20.0, abs=0.3)
    assert metrics.si_sdr(x, 0.25 * y) == pytest.approx(metrics.si_sdr(x, y), abs=1e-6)


def test_gain_gives_closed_form_spectral_distances():
    x = music(seconds=1.0)
    g = 0.5
    # Every mel/STFT magnitude scales by g: each log term is |p log10 g| wherever the clamp is
    # not reached (empty mel bands at the finest resolutions stay at 0 for both).
    mel = metrics.mel_distance(x, g * x, SR)
    assert mel == pytest.approx(7 * abs(math.log10(g)), rel=0.03)
    assert mel <= 7 * abs(math.log10(g)) + 1e-9
    log_only = metrics.stft_distance(x, g * x, SR, mag_weight=0.0)
    assert log_only == pytest.approx(2 * 2 * abs(math.log10(g)), rel=0.01)
    assert metrics.si_sdr(x, g * x) == metrics.SI_SDR_MAX_DB  # scale-invariant


@pytest.mark.parametrize("name", ["mel_distance", "stft_distance", "cqt_distance", "si_sdr"])
def test_more_noise_or_delay_moves_metric_the_right_way(name):
    x = music(seconds=1.5)
    sign = 1.0 if name in metrics.HIGHER_IS_BETTER else -1.0
    clean, mild, heavy = (
        metrics.compute_all(x, y, SR, which=name)[name]
        for y in (noisy(x, 40.0), noisy(x, 20.0), noisy(x, 5.0))
    )
    assert sign * clean > sign * mild > sign * heavy
    delayed = np.concatenate([np.zeros((1, 80), np.float32), x[:, :-80]], axis=1)  # 5 ms
    d = metrics.compute_all(x, delayed, SR, which=name)[name]
    assert sign * d < sign * metrics.compute_all(x, x, SR, which=name)[name]


def test_chroma_distance_sees_a_pitch_change_more_than_noise():
    x = music(seconds=1.5)
    other_key = music(seconds=1.5, channels=2)[1:]  # different notes
    assert metrics.chroma_distance(x, other_key, SR) > 4 * metrics.chroma_distance(
        x, noisy(x, 30.0), SR
    )
    assert metrics.chroma_distance(x, x.copy(), SR) == 0.0


def test_loudness_difference_of_minus_6_db_copy():
    pytest.importorskip("pyloudnorm")
    x = music(seconds=2.0, channels=2)
    assert metrics.loudness_difference(x, x * 10 ** (-6 / 20), SR) == pytest.approx(6.0, abs=0.02)
    assert metrics.loudness_difference(x, x, SR) == 0.0
    silent = np.zeros_like(x)
    assert metrics.loudness_difference(silent, silent, SR) == 0.0
    # Silence counts as the absolute gate, -70 LUFS: a large error, not inf or nan.
    lx = metrics.loudness(x, SR)
    assert metrics.loudness_difference(x, silent, SR) == pytest.approx(lx + 70.0)
    with pytest.raises(ValueError, match="0.4 s"):
        metrics.loudness(x[:, :1000], SR)


def test_stereo_averages_channels_and_shapes_are_checked():
    x = music(channels=2)
    y = noisy(x, 15.0)
    per_channel = [metrics.si_sdr(x[c], y[c]) for c in range(2)]
    assert metrics.si_sdr(x, y) == pytest.approx(np.mean(per_channel))
    mel_channels = [metrics.mel_distance(x[c], y[c], SR) for c in range(2)]
    assert metrics.mel_distance(x, y, SR) == pytest.approx(np.mean(mel_channels), rel=1e-9)
    # [T] and [1, T] are the same thing.
    assert metrics.mel_distance(x[0], y[0], SR) == metrics.mel_distance(x[:1], y[:1], SR)
    with pytest.raises(ValueError, match="differ in length"):
        metrics.compute_all(x, y[:, :-1], SR, which="si_sdr")
    with pytest.raises(ValueError, match="channel"):
        metrics.compute_all(x, y[:1], SR, which="si_sdr")
    with pytest.raises(ValueError, match="channels first"):
        metrics.si_sdr(x.T, y.T)
    with pytest.raises(ValueError, match="NaN"):
        metrics.si_sdr(x, np.full_like(x, np.nan))
    with pytest.raises(ValueError, match="too short"):
        metrics.mel_distance(x[:, :1000], y[:, :1000], SR)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute_all(x, y, SR, which=["mel_distance", "nope"])


def test_compute_all_is_deterministic_and_skips_missing_packages(monkeypatch):
    x = music(seconds=1.0, channels=2)
    y = noisy(x, 20.0)
    names = ["mel_distance", "stft_distance", "si_sdr", "cqt_distance", "chroma_distance"]
    a = metrics.compute_all(x, y, SR, which=names)
    b = metrics.compute_all(x.copy(), y.copy(), SR, which=names)
    assert list(a) == list(b) == names
    # Same numbers; BLAS/SIMD code paths may differ in the last bit with memory alignment.
    assert all(b[n] == pytest.approx(a[n], rel=1e-12, abs=1e-15) for n in names)
    assert all(isinstance(v, float) and math.isfinite(v) for v in a.values())

    # Without visqol-python: not in the default set, and asking for it explains what to install.
    real = metrics._importable
    monkeypatch.setattr(metrics, "_importable", lambda m: m != "visqol" and real(m))
    monkeypatch.setitem(sys.modules, "visqol", None)  # makes `import visqol` fail
    metrics._visqol_api.cache_clear()
    assert "visqol" not in metrics.available_metrics()
    with pytest.raises(metrics.MissingDependencyError, match="pip install visqol-python"):
        metrics.compute_all(x, y, SR, which="visqol")
    metrics._visqol_api.cache_clear()


def test_code_usage_known_codes():
    codes = (np.array([[0, 1, 2, 3]]), np.zeros((1, 2), np.int32))  # hierarchical: 4 + 2 codes
    l0, l1 = codebook_usage.code_usage(codes, 4)
    assert (l0["usage"], l0["entropy_bits"], l0["perplexity"], l0["n_codes"]) == (1.0, 2.0, 4.0, 4)
    assert (l1["usage"], l1["entropy_bits"], l1["perplexity"], l1["n_codes"]) == (0.25, 0.0, 1.0, 2)
    # [levels, T] array, per-level sizes, and counts summed over files.
    (s,) = codebook_usage.code_usage(np.array([[0, 0, 1, 1]]), [8])
    assert s["usage"] == 2 / 8 and s["entropy_bits"] == pytest.approx(1.0)
    counts = [
        a + b
        for a, b in zip(
            codebook_usage.code_histograms(codes, 4), codebook_usage.code_histograms(codes, 4)
        )
    ]
    assert codebook_usage.code_usage_from_counts(counts)[0]["n_codes"] == 8
    flat = codebook_usage.flatten_code_usage([l0, l1])
    assert flat["code_entropy_bits_l0"] == 2.0 and flat["code_usage_l1"] == 0.25
    with pytest.raises(ValueError, match="outside"):
        codebook_usage.code_usage([np.array([0, 4])], 4)
    with pytest.raises(ValueError, match="levels"):
        codebook_usage.code_usage(codes, [4])


# ---------------------------------------------------------------------------------------------
# Metrics: agreement with references


def test_mel_and_stft_distance_match_the_jax_training_losses():
    import functools

    import jax
    import jax.numpy as jnp

    from jax_codec.losses import spectral

    x = music(seconds=1.0)
    y = noisy(0.7 * x, 10.0)
    mel_jax = jax.jit(
        functools.partial(spectral.multi_resolution_mel_loss, sample_rate=SR, power=1.0)
    )(jnp.asarray(y), jnp.asarray(x))
    stft_jax = jax.jit(spectral.multi_scale_stft_loss)(jnp.asarray(y), jnp.asarray(x))
    assert metrics.mel_distance(x, y, SR) == pytest.approx(float(mel_jax), rel=2e-5)
    assert metrics.stft_distance(x, y, SR) == pytest.approx(float(stft_jax), rel=2e-5)


@pytest.fixture(scope="module")
def dac_loss():
    """descript-audio-codec's `dac.nn.loss`, or skip. audiotools imports torchaudio at import
    time but the mel/STFT code never calls it; where no torchaudio build loads next to the CPU
    torch (PyPI's is a CUDA build), a placeholder module stands in during the import only."""
    pytest.importorskip("torch")
    stubbed = False
    try:
        import torchaudio  # noqa: F401
    except Exception:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
        stubbed = True
    try:
        loss = pytest.importorskip("dac.nn.loss", reason="descript-audio-codec not installed")
    finally:
        if stubbed:
            sys.modules.pop("torchaudio", None)
    from audiotools import AudioSignal

    return loss, AudioSignal


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.filterwarnings("ignore:stft_data changed shape")
def test_mel_and_stft_distance_match_descript_audio_codec(dac_loss, channels):
    import torch

    loss, AudioSignal = dac_loss
    sr = 44100
    x = music(seconds=1.0, sr=sr, channels=channels, seed=3)
    y = noisy(0.8 * x, 12.0, seed=4)
    # DAC's evaluation settings (conf/base.yml); MultiScaleSTFTLoss with its defaults.
    mel = loss.MelSpectrogramLoss(
        n_mels=[5, 10, 20, 40, 80, 160, 320],
        window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
        mel_fmin=[0.0] * 7,
        mel_fmax=[None] * 7,
        pow=1.0,
        clamp_eps=1e-5,
        mag_weight=0.0,
    )
    stft = loss.MultiScaleSTFTLoss(window_lengths=[2048, 512])

    def sig(a):
        return AudioSignal(torch.from_numpy(a[None].copy()), sr)

    with torch.no_grad():
        ref_mel = float(mel(sig(y), sig(x)))
        ref_stft = float(stft(sig(y), sig(x)))
    assert metrics.mel_distance(x, y, sr) == pytest.approx(ref_mel, rel=1e-5)
    assert metrics.stft_distance(x, y, sr) == pytest.approx(ref_stft, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Metrics: perceptual models (optional packages)


def test_visqol_identical_is_maximal_and_noise_lowers_it():
    pytest.importorskip("visqol", reason="visqol-python not installed")
    x = music(seconds=2.0, channels=2)
    same = metrics.visqol(x, x, SR)
    degraded = metrics.visqol(x, noisy(x, 10.0), SR)
    assert same > 4.6 and degraded < same - 0.3
    assert metrics.visqol(x, x, SR) == pytest.approx(same, rel=1e-12)  # deterministic


def speech_like(seconds: float = 3.0, sr: int = SR) -> np.ndarray:
    """Voiced-speech-like signal: a 120 Hz harmonic buzz through moving formants, syllables
    at 4 Hz."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(
        np.sin(h * phase) / h * (1 + np.cos(2 * np.pi * (h * 120 - 700) / 2000))
        for h in range(1, 30)
    )
    syll = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    return (0.1 * x * syll)[None].astype(np.float32)


@pytest.mark.parametrize("name", ["pesq_wb_speech", "stoi_speech"])
def test_speech_metrics_rank_clean_above_noisy(name):
    pytest.importorskip({"pesq_wb_speech": "pesq", "stoi_speech": "pystoi"}[name])
    x = speech_like()
    same = metrics.compute_all(x, x, SR, which=name)[name]
    bad = metrics.compute_all(x, noisy(x, 5.0), SR, which=name)[name]
    assert math.isfinite(same) and math.isfinite(bad)
    assert same > bad


# ---------------------------------------------------------------------------------------------
# Baselines (ffmpeg)


def _have_ffmpeg() -> bool:
    try:
        baselines.ffmpeg_path()
        return True
    except baselines.FFmpegNotFoundError:
        return False


needs_ffmpeg = pytest.mark.skipif(
    not _have_ffmpeg(),
    reason="no ffmpeg (apt-get install ffmpeg, or pip install imageio-ffmpeg)",
)


def test_ffmpeg_path_fallbacks_and_install_hint(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(baselines.FFmpegNotFoundError) as e:
        baselines.ffmpeg_path()
    assert "apt-get install ffmpeg" in str(e.value) and "pip install imageio-ffmpeg" in str(e.value)
    fake = types.ModuleType("imageio_ffmpeg")
    fake.get_ffmpeg_exe = lambda: sys.executable  # any existing file
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", fake)
    assert baselines.ffmpeg_path() == sys.executable


def test_encoding_sample_rates():
    assert baselines.encoding_sample_rate("opus", 44100, 6) == 48000
    assert baselines.encoding_sample_rate("mp3", 44100, 64, 2) == 24000  # LAME: 11 kHz lowpass
    assert baselines.encoding_sample_rate("mp3", 44100, 128, 2) == 44100
    assert baselines.encoding_sample_rate("mp3", 44100, 6, 2) == 8000
    assert baselines.encoding_sample_rate("mp3", 16000, 128, 2) == 16000
    assert baselines.encoding_sample_rate("mp3", 44100, 32, 1) == 22050  # mono: 1.5x lowpass
    assert baselines.encoding_sample_rate("aac", 44100, 128, 2) == 44100
    assert baselines.encoding_sample_rate("vorbis", 44100, 6, 2) == 44100
    assert baselines.encoding_sample_rate("vorbis", 44000, 64, 2) == 44100
    with pytest.raises(ValueError, match="unknown codec"):
        baselines.encoding_sample_rate("flac", 44100, 64)


@pytest.fixture(scope="module")
def clip():
    """2 s stereo at 44.1 kHz with clicks that make the alignment unambiguous."""
    sr = 44100
    x = music(seconds=2.0, sr=sr, channels=2, seed=5)
    for k in range(4):
        x[:, int((0.2 + 0.45 * k) * sr)] += 0.7
    return x, sr


@needs_ffmpeg
@pytest.mark.parametrize("codec", list(baselines.CODECS))
def test_round_trip_keeps_shape_and_time_alignment(clip, codec):
    x, sr = clip
    r = baselines.round_trip(x, sr, codec, 64)
    assert r.audio.shape == x.shape and r.audio.dtype == np.float32
    for c in range(2):
        assert abs(lag_of(x[c], r.audio[c])) <= 1, codec
    assert metrics.si_sdr(x, r.audio) > 5.0  # aligned, so the waveform survives
    y, kbps = baselines.encode_decode(x[0], sr, codec, 64)  # mono in, mono out
    assert y.shape == x[0].shape and kbps > 0


@needs_ffmpeg
@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_actual_bitrate_near_target(clip, codec):
    x, sr = clip
    _, kbps = baselines.encode_decode(x, sr, codec, 64)
    assert 64 * 0.9 < kbps < 64 * 1.15, kbps


@needs_ffmpeg
@pytest.mark.parametrize(
    "codec,low,high", [("opus", 12, 96), ("mp3", 32, 128), ("vorbis", 48, 128), ("aac", 32, 128)]
)
def test_higher_bitrate_gives_lower_mel_distance(clip, codec, low, high):
    x, sr = clip
    lo = baselines.round_trip(x, sr, codec, low)
    hi = baselines.round_trip(x, sr, codec, high)
    assert hi.kbps > lo.kbps
    assert metrics.mel_distance(x, hi.audio, sr) < metrics.mel_distance(x, lo.audio, sr)


@needs_ffmpeg
def test_vorbis_steps_down_the_sample_rate_and_reports_impossible_bitrates(clip):
    x, sr = clip
    r = baselines.round_trip(x, sr, "vorbis", 24)
    assert r.encode_rate < sr and r.audio.shape == x.shape
    with pytest.raises(baselines.BaselineError, match="any sample rate"):
        baselines.round_trip(x, sr, "vorbis", 4)


@needs_ffmpeg
def test_missing_encoder_and_bad_arguments(clip, monkeypatch):
    x, sr = clip
    with pytest.raises(ValueError, match="unknown codec"):
        baselines.encode_decode(x, sr, "flac", 64)
    with pytest.raises(ValueError, match="channels first"):
        baselines.encode_decode(x.T, sr, "opus", 64)
    with pytest.raises(ValueError, match="kbps"):
        baselines.encode_decode(x, sr, "opus", 0)
    monkeypatch.setattr(baselines, "available_encoders", lambda exe=None: frozenset({"aac"}))
    with pytest.raises(baselines.BaselineError, match="no 'libopus' encoder"):
        baselines.encode_decode(x, sr, "opus", 64)
