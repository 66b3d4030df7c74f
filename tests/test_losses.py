"""Tests for jax_codec.losses: values against references, orderings, gradients, balancer."""

import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jax_codec import losses
from jax_codec.losses import spectral

SR = 16000
N = 8000  # 0.5 s
LOG2 = float(np.log10(2.0))


def _pluck(freq: float, start: int, length: int, amp: float) -> np.ndarray:
    """A decaying harmonic note, as a plucked string."""
    t = np.arange(length) / SR
    tone = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3))
    out = np.zeros(N)
    end = min(N, start + length)
    out[start:end] = (amp * tone * np.exp(-t / 0.08))[: end - start]
    return out


@functools.lru_cache
def music(batch: int = 2) -> np.ndarray:
    """Short music-like clips `[B, N]`: plucked notes, a drum hit and a quiet noise floor."""
    rng = np.random.default_rng(0)
    clips = []
    for b in range(batch):
        x = 1e-3 * rng.standard_normal(N)
        for i, midi in enumerate((45, 52, 57, 64) if b == 0 else (40, 47, 55, 59)):
            x += _pluck(librosa.midi_to_hz(midi), i * 2000, 2400, 0.3)
        hit = 3000 + 1000 * b
        x[hit : hit + 800] += 0.5 * rng.standard_normal(800) * np.exp(-np.arange(800) / 150)
        clips.append(x)
    return np.stack(clips).astype(np.float32)


def shifted(x: np.ndarray, shift: int) -> np.ndarray:
    """Delay by `shift` samples, zero-filled."""
    return np.pad(x, [(0, 0), (shift, 0)])[:, : x.shape[1]]


# Name -> loss(pred, target); reduced resolutions where the full default would only cost time.
LOSSES = {
    "mel": lambda p, t: losses.multi_resolution_mel_loss(
        p, t, SR, window_lengths=(32, 256, 2048), n_mels=(5, 40, 320)
    ),
    "stft": lambda p, t: losses.multi_scale_stft_loss(p, t),
    "cqt": lambda p, t: losses.cqt_loss(p, t, SR),
    "onset": lambda p, t: losses.onset_weighted_loss(p, t, SR),
}
JITTED = {name: jax.jit(fn) for name, fn in LOSSES.items()}
GRADS = {name: jax.jit(jax.value_and_grad(fn)) for name, fn in LOSSES.items()}


# --- STFT and DAC's mel definition ---------------------------------------------------------


@pytest.mark.parametrize("n_fft,hop,pad_mode", [(64, 16, "reflect"), (100, 30, "constant")])
def test_stft_matches_librosa(n_fft, hop, pad_mode):
    x = music()
    ours = np.asarray(losses.stft(jnp.asarray(x), n_fft, hop, pad_mode=pad_mode))
    ref = librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", pad_mode=pad_mode)
    assert ours.shape == (2, 1 + N // hop, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, np.swapaxes(ref, -1, -2), atol=2e-4)


def _dac_mel_reference(pred, target, power, windows, n_mels):
    """DAC's MelSpectrogramLoss written with numpy/librosa (reflect-padded periodic-Hann STFT)."""
    total = 0.0
    for w, m in zip(windows, n_mels, strict=True):
        basis = librosa.filters.mel(sr=SR, n_fft=w, n_mels=m)
        mels = [
            basis @ np.abs(librosa.stft(s, n_fft=w, hop_length=w // 4, pad_mode="reflect"))
            for s in (pred, target)
        ]
        logs = [power * np.log10(np.maximum(mel, 1e-5)) for mel in mels]
        total += np.mean(np.abs(logs[0] - logs[1]))
    return total


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_mel_loss_matches_dac_definition(power):
    x = music()
    y = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    ours = jax.jit(
        functools.partial(losses.multi_resolution_mel_loss, sample_rate=SR, power=power)
    )(y, x)
    ref = _dac_mel_reference(
        y, x, power, (32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320)
    )
    assert ref > 0.5  # a real difference, not a degenerate comparison
    np.testing.assert_allclose(float(ours), ref, rtol=1e-4)
    mean = losses.multi_resolution_mel_loss(
        y, x, SR, window_lengths=(256, 1024), n_mels=(40, 80), power=power, reduction="mean"
    )
    ref_mean = _dac_mel_reference(y, x, power, (256, 1024), (40, 80)) / 2
    np.testing.assert_allclose(float(mean), ref_mean, rtol=1e-4)


def test_mel_loss_matches_dac_torch():
    torch = pytest.importorskip("torch")
    # audiotools imports torchaudio but its mel code never calls it; PyPI's torchaudio is a CUDA
    # build that cannot load beside CPU torch, so a placeholder stands in during the import.
    import sys
    import types

    stubbed = "torchaudio" not in sys.modules
    if stubbed:
        try:
            import torchaudio  # noqa: F401

            stubbed = False
        except Exception:
            sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        dac_loss = pytest.importorskip("dac.nn.loss")
        audiotools = pytest.importorskip("audiotools")
    finally:
        if stubbed:
            sys.modules.pop("torchaudio", None)
    x = music()
    y = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    signal = lambda a: audiotools.AudioSignal(torch.from_numpy(a[:, None, :]), sample_rate=SR)
    ref = dac_loss.MelSpectrogramLoss(
        n_mels=[5, 10, 20, 40, 80, 160, 320],
        window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
        mel_fmin=[0.0] * 7,
        mel_fmax=[None] * 7,
        pow=1.0,
        mag_weight=0.0,
        clamp_eps=1e-5,
    )(signal(y), signal(x))
    ours = losses.multi_resolution_mel_loss(y, x, SR, power=1.0)
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-4)


def test_gain_gives_exact_log_offsets():
    """Scaling by 2 shifts every unclamped log10 magnitude by log10(2) (times power, times scales)."""
    x = music()
    mel = jax.jit(
        lambda p, t: losses.multi_resolution_mel_loss(
            p, t, SR, window_lengths=(64, 256, 1024), n_mels=(10, 40, 80), power=1.0
        )
    )(2 * x, x)
    np.testing.assert_allclose(float(mel), 3 * LOG2, rtol=2e-3)
    stft = jax.jit(functools.partial(losses.multi_scale_stft_loss, mag_weight=0.0))(2 * x, x)
    np.testing.assert_allclose(float(stft), 2 * 2 * LOG2, rtol=2e-3)
    np.testing.assert_allclose(float(JITTED["cqt"](2 * x, x)), LOG2, rtol=2e-3)
    np.testing.assert_allclose(float(JITTED["onset"](2 * x, x)), LOG2, rtol=2e-3)


def test_stft_magnitude_term_matches_numpy():
    x = music()
    ref = sum(
        np.mean(np.abs(librosa.stft(x, n_fft=w, hop_length=w // 4, pad_mode="reflect")))
        for w in (2048, 512)
    )
    ours = jax.jit(functools.partial(losses.multi_scale_stft_loss, log_weight=0.0))(0 * x, x)
    np.testing.assert_allclose(float(ours), ref, rtol=1e-4)


# --- properties shared by the reconstruction losses ----------------------------------------


@pytest.mark.parametrize("name", list(LOSSES))
def test_identical_inputs_give_zero(name):
    x = music()
    assert float(JITTED[name](x, x)) < 1e-6


@pytest.mark.parametrize("name", list(LOSSES))
def test_gain_and_shift_orderings(name):
    x = music()
    loss = JITTED[name]
    small, large = float(loss(1.1 * x, x)), float(loss(2 * x, x))
    assert large > 2 * small > 0
    by_shift = [float(loss(shifted(x, s), x)) for s in (16, 128, 1024)]
    assert 0 < by_shift[0] < by_shift[1] < by_shift[2], by_shift


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradients_finite_and_descend(name):
    x = music()
    _, grad_at_zero = GRADS[name](jnp.zeros_like(x), x)
    assert np.isfinite(np.asarray(grad_at_zero)).all()
    _, grad_at_target = GRADS[name](x, x)
    assert np.isfinite(np.asarray(grad_at_target)).all()
    # Away from the optimum the gradient is informative: a small step along it lowers the loss.
    pred = x + 0.05 * np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    value, grad = GRADS[name](pred, x)
    grad = np.asarray(grad)
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    stepped = pred - 1e-3 * grad / np.abs(grad).max()
    assert float(JITTED[name](stepped, x)) < float(value)


# --- CQT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("midi", [33, 45, 57, 64, 76])
def test_cqt_pure_tone_peaks_at_its_note(midi):
    sr = 44100  # decimated by 4 inside cqt
    assert losses.cqt_kernel(sr, librosa.note_to_hz("C1"), 84, 12, 512).decimation == 4
    t = np.arange(sr // 4) / sr
    tone = np.sin(2 * np.pi * librosa.midi_to_hz(midi) * t)[None].astype(np.float32)
    mag = np.abs(np.asarray(losses.cqt(tone, sr, fmin=librosa.note_to_hz("C1"))))
    # Bin 0 is C1 (MIDI 24); look at a frame well inside the signal.
    assert int(mag[0, mag.shape[1] // 2].argmax()) == midi - 24


def test_cqt_decimation_is_exact():
    """The decimated path (one rate, D = 4 at 44.1 kHz) equals the full-rate transform."""
    x = np.random.default_rng(8).standard_normal((2, 11025)).astype(np.float32)
    fast = np.asarray(losses.cqt(x, 44100))
    full = np.asarray(losses.cqt(x, 44100, decimate=False))
    assert fast.shape == full.shape == (2, 1 + 11025 // 512, 84)
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-4 * np.abs(full).max())


@pytest.mark.filterwarnings("ignore:n_fft=.*too large")  # librosa's deepest octaves
def test_cqt_matches_librosa():
    sr = 22050  # decimated by 2 inside cqt
    x = librosa.resample(music()[0], orig_sr=SR, target_sr=sr)
    ours = np.abs(np.asarray(losses.cqt(x[None], sr, fmin=32.7, hop_length=512)))[0].T
    ref = np.abs(librosa.cqt(x, sr=sr, fmin=32.7, n_bins=84, hop_length=512))
    assert ours.shape == ref.shape
    # librosa filters each lower octave on a once-more downsampled signal; its resampling error
    # (largest in the lowest octave) bounds the agreement: within 3% of the peak everywhere.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=0.03 * ref.max())
    corr = np.corrcoef(np.log10(ours + 1e-4).ravel(), np.log10(ref + 1e-4).ravel())[0, 1]
    assert corr > 0.99


def test_cqt_loss_pitch_sensitivity():
    t = np.arange(N) / SR
    floor = 1e-3 * np.random.default_rng(3).standard_normal(N)  # -54 dB, as any recording has
    tone = lambda f: (0.5 * np.sin(2 * np.pi * f * t) + floor)[None].astype(np.float32)
    a3 = 220.0
    by_cents = [
        float(JITTED["cqt"](tone(a3 * 2 ** (c / 1200)), tone(a3))) for c in (2, 10, 50, 200)
    ]
    assert 0 < by_cents[0] < by_cents[1] < by_cents[2] < by_cents[3], by_cents
    noise = 0.5 * np.random.default_rng(4).standard_normal((1, N)).astype(np.float32)
    vs_noise = float(JITTED["cqt"](noise, tone(a3)))
    assert vs_noise > 10 * by_cents[1]  # 10 cents sharp is far closer than noise


def test_cqt_rejects_bins_above_nyquist():
    with pytest.raises(ValueError, match="Nyquist"):
        losses.cqt_kernel(8000, 32.7, 96, 12, 512)


# --- onset weighting -----------------------------------------------------------------------


def _drum_over_tone(onset: int) -> np.ndarray:
    t = np.arange(N) / SR
    x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 440 * t)
    burst = np.random.default_rng(4).standard_normal(N - onset)
    x[onset:] += 0.8 * burst * np.exp(-np.arange(N - onset) / 320)
    return x[None].astype(np.float32)


def test_onset_weights_mean_one_and_peak_at_attack():
    onset = 4000
    target = np.concatenate([_drum_over_tone(onset), _drum_over_tone(6000)])
    weights = np.asarray(losses.onset_weights(target, SR, hop_length=256))
    np.testing.assert_allclose(weights.mean(axis=1), 1.0, rtol=1e-5)
    # The attack enters the 1024-sample window of frame (onset - 512) / 256 = 13.6, so the raw
    # flux peaks at frame 14; the +-2 frame spread keeps the maximum within frames 12..16.
    assert 12 <= int(weights[0].argmax()) <= 16
    assert 20 <= int(weights[1].argmax()) <= 24
    assert weights[0].max() > 4 * np.median(weights[0])
    # Weights come from the target only and carry no gradient.
    grad = jax.grad(lambda t: losses.onset_weights(t, SR).sum())(jnp.asarray(target))
    assert float(jnp.abs(grad).max()) == 0.0


def test_onset_weights_flat_without_onsets():
    """A steady chord has no attacks: no frame stands out, in particular not at the clip edges
    (where reflect padding folds the waveform and would fake an attack)."""
    t = np.arange(N) / SR
    chord = sum(0.2 * np.sin(2 * np.pi * f * t + f) for f in (220.0, 277.2, 329.6))
    weights = np.asarray(losses.onset_weights(chord[None].astype(np.float32), SR))
    assert 0.1 < weights.min() and weights.max() < 2.0, weights


def test_onset_loss_emphasises_errors_at_attacks():
    onset = 4000
    target = _drum_over_tone(onset)
    error = 0.02 * np.random.default_rng(5).standard_normal(256).astype(np.float32)
    pre_echo, steady = target.copy(), target.copy()
    pre_echo[0, onset - 320 : onset - 64] += error  # just before the attack
    steady[0, 1200 : 1200 + 256] += error  # the same error where only the tone plays
    plain = lambda p: losses.onset_weighted_loss(p, target, SR, flux_floor=1e6)  # weights ~1
    weighted = lambda p: losses.onset_weighted_loss(p, target, SR)
    # In plain log-mel the loud attack shares the analysis windows with the pre-echo and masks
    # it, so pre-echo looks cheaper than the same error in a quiet passage; the weights flip that.
    assert float(plain(pre_echo)) < float(plain(steady))
    assert float(weighted(pre_echo)) > 5 * float(weighted(steady))


# --- adversarial ---------------------------------------------------------------------------

REAL = [jnp.array([[0.5, 1.0]]), jnp.array([2.0])]
FAKE = [jnp.array([[0.0, 0.5]]), jnp.array([-1.0])]


def test_lsgan_values():
    # D1: mean(0.25, 0) + mean(0, 0.25) = 0.25; D2: (1 - 2)^2 + (-1)^2 = 2.
    assert float(losses.discriminator_loss(REAL, FAKE, "lsgan")) == pytest.approx(2.25)
    d_mean = losses.discriminator_loss(REAL, FAKE, "lsgan", reduction="mean")
    assert float(d_mean) == pytest.approx(1.125)
    # G: mean(1, 0.25) + (1 + 1)^2 = 0.625 + 4.
    assert float(losses.generator_adv_loss(FAKE, "lsgan")) == pytest.approx(4.625)
    # d/df mean((1 - f)^2) = -2 (1 - f) / n.
    grad = jax.grad(lambda f: losses.generator_adv_loss([f]))(FAKE[0])
    np.testing.assert_allclose(np.asarray(grad), [[-1.0, -0.5]])


def test_hinge_values():
    # D1: mean(relu(0.5), relu(0)) + mean(relu(1), relu(1.5)) = 0.25 + 1.25; D2: 0 + relu(0) = 0.
    assert float(losses.discriminator_loss(REAL, FAKE, "hinge")) == pytest.approx(1.5)
    # G: -mean(fake) = -0.25 + 1.
    assert float(losses.generator_adv_loss(FAKE, "hinge")) == pytest.approx(0.75)


def test_adversarial_accepts_any_logit_shapes_and_rejects_unknown_kind():
    real = [jnp.ones((2, 7, 1)), jnp.ones((2, 3, 5, 1))]
    fake = [jnp.zeros((2, 7, 1)), jnp.zeros((2, 3, 5, 1))]
    assert float(losses.discriminator_loss(real, fake)) == 0.0  # the perfect discriminator
    assert float(losses.generator_adv_loss(fake)) == pytest.approx(2.0)
    loss = jax.jit(functools.partial(losses.discriminator_loss, kind="hinge"))
    assert float(loss(real, fake)) == pytest.approx(2.0)  # hinge: relu(1 + 0) per disc
    with pytest.raises(ValueError, match="lsgan.*hinge"):
        losses.discriminator_loss(real, fake, kind="wgan")
    with pytest.raises(ValueError, match="lsgan.*hinge"):
        losses.generator_adv_loss(fake, kind="wgan")


def test_feature_matching():
    real = [[jnp.zeros((2, 4, 3)), jnp.ones((2, 2, 8))], [jnp.full((2, 5), 2.0)]]
    assert float(losses.feature_matching_loss(real, real)) == 0.0
    fake = [[real[0][0] + 1.0, real[0][1] - 3.0], [real[1][0] + 0.5]]
    # D1 layers: 1 and 3; D2: 0.5. DAC's sum over layers and discriminators: 4.5; the mean
    # over each discriminator's layers, then over discriminators: (2 + 0.5) / 2 = 1.25.
    assert float(losses.feature_matching_loss(real, fake)) == pytest.approx(4.5)
    assert float(losses.feature_matching_loss(real, fake, reduction="mean")) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="reduction"):
        losses.feature_matching_loss(real, fake, reduction="max")
    grad_real = jax.grad(lambda r: losses.feature_matching_loss(r, fake))(real)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grad_real))
    grad_fake = jax.grad(lambda f: losses.feature_matching_loss(real, f))(fake)
    # sign(+1) / 24 elements (summed over layers and discriminators: no further division).
    np.testing.assert_allclose(np.asarray(grad_fake[0][0]), 1 / 24)
    grad_mean = jax.grad(lambda f: losses.feature_matching_loss(real, f, reduction="mean"))(fake)
    np.testing.assert_allclose(np.asarray(grad_mean[0][0]), 1 / 96)  # / 2 layers / 2 discs


# --- balancer ------------------------------------------------------------------------------


def _two_scale_losses(target: jax.Array, big: float):
    """Loss 'a' sees the first half of the samples, 'b' the second: gradients are disjoint."""
    half = target.shape[1] // 2
    return {
        "a": lambda y: big * jnp.mean((y[:, :half] - target[:, :half]) ** 2),
        "b": lambda y: jnp.mean((y[:, half:] - target[:, half:]) ** 2),
    }


def _half_norms(grad: jax.Array) -> tuple[float, float]:
    half = grad.shape[1] // 2
    per_item = lambda g: float(jnp.linalg.norm(g, axis=1).mean())
    return per_item(grad[:, :half]), per_item(grad[:, half:])


def test_balancer_follows_weights_despite_1000x_gradient_scales():
    rng = np.random.default_rng(6)
    target = jnp.asarray(rng.standard_normal((3, 64)), jnp.float32)
    y = target + jnp.asarray(rng.standard_normal((3, 64)), jnp.float32)
    loss_fns = _two_scale_losses(target, big=1000.0)
    weights = {"a": 1.0, "b": 3.0}
    state = losses.init_balancer_state(loss_fns)

    raw_a, raw_b = _half_norms(jax.grad(lambda v: sum(f(v) for f in loss_fns.values()))(y))
    assert 500 < raw_a / raw_b < 2000  # the raw gradients really differ by ~1000x

    step = jax.jit(lambda y, s: losses.balance_gradients(loss_fns, weights, y, s, total_norm=2.0))
    grad, state, metrics = step(y, state)
    norm_a, norm_b = _half_norms(grad)
    np.testing.assert_allclose([norm_a, norm_b], [0.5, 1.5], rtol=1e-4)  # 2.0 * (1/4, 3/4)
    np.testing.assert_allclose(
        float(metrics["balancer/a/ratio"]), raw_a / (raw_a + raw_b), rtol=1e-4
    )

    # Second step: the EMA (bias-corrected, decay 0.999) mixes the old and new norms.
    grad2, state2, metrics2 = step(2 * y - target, state)  # residual doubles -> norms double
    expected_avg_a = (0.999 * raw_a + 2 * raw_a) / 1.999
    np.testing.assert_allclose(
        float(metrics2["balancer/a/scale"]), 0.25 * 2.0 / expected_avg_a, rtol=1e-4
    )
    norm_a2, norm_b2 = _half_norms(grad2)
    np.testing.assert_allclose(norm_b2 / norm_a2, 3.0, rtol=1e-4)  # the ratio still holds
    np.testing.assert_allclose(float(state2["weight_sum"]["a"]), 1.999, rtol=1e-6)


def test_balancer_off_is_plain_weighted_sum():
    rng = np.random.default_rng(7)
    target = jnp.asarray(rng.standard_normal((2, 16)), jnp.float32)
    y = jnp.zeros_like(target)
    loss_fns = _two_scale_losses(target, big=1000.0)
    weights = {"a": 0.5, "b": 2.0}
    grad, _, metrics = losses.balance_gradients(
        loss_fns, weights, y, losses.init_balancer_state(loss_fns), balance_grads=False
    )
    expected = jax.grad(lambda v: 0.5 * loss_fns["a"](v) + 2.0 * loss_fns["b"](v))(y)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-6)
    total = 0.5 * loss_fns["a"](y) + 2.0 * loss_fns["b"](y)
    np.testing.assert_allclose(float(metrics["balancer/effective_loss"]), float(total), rtol=1e-6)
    with pytest.raises(ValueError, match="no weight"):
        losses.balance_gradients(loss_fns, {"a": 1.0}, y, losses.init_balancer_state(loss_fns))


def test_balancer_with_spectral_loss_is_jittable_and_finite():
    x = jnp.asarray(music())
    loss_fns = {
        "mel": lambda y: losses.multi_resolution_mel_loss(
            y, x, SR, window_lengths=(256,), n_mels=(40,)
        ),
        "stft": lambda y: losses.multi_scale_stft_loss(y, x, window_lengths=(512,)),
    }
    step = jax.jit(lambda y, s: losses.balance_gradients(loss_fns, {"mel": 1.0, "stft": 1.0}, y, s))
    grad, state, metrics = step(jnp.zeros_like(x) + 0.01 * x, losses.init_balancer_state(loss_fns))
    assert grad.shape == x.shape and np.isfinite(np.asarray(grad)).all()
    assert set(state["norm_sum"]) == {"mel", "stft"}
    assert float(metrics["balancer/mel/ratio"]) + float(
        metrics["balancer/stft/ratio"]
    ) == pytest.approx(1.0, rel=1e-5)


def test_spectral_rejects_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        spectral.multi_scale_stft_loss(music(), music(), reduction="max")


# --- waveform-aligned terms ------------------------------------------------------------------


def test_complex_stft_and_waveform_losses_see_phase_that_mel_misses():
    x = jnp.asarray(music(1), jnp.float32)
    assert float(losses.complex_stft_loss(x, x)) < 1e-5  # the magnitude's 1e-6 floor per window
    assert float(losses.waveform_l1_loss(x, x)) == 0.0
    # A polarity flip keeps every magnitude (mel distance 0) but is the worst waveform match.
    flipped = -x
    mel = float(losses.multi_resolution_mel_loss(flipped, x, SR, power=1.0))
    assert mel < 1e-5
    assert float(losses.complex_stft_loss(flipped, x)) > 1.0
    np.testing.assert_allclose(
        float(losses.waveform_l1_loss(flipped, x)), 2 * float(jnp.mean(jnp.abs(x))), rtol=1e-6
    )
    # The compressed spectra make the loss far less level-dependent than waveform L1.
    quiet = 0.01 * x
    ratio_complex = float(losses.complex_stft_loss(-quiet, quiet)) / float(
        losses.complex_stft_loss(flipped, x)
    )
    assert ratio_complex == pytest.approx(0.01**0.3, rel=0.02)  # |X|^0.3 scales as 0.01^0.3
    # Finite gradients even for silence (the magnitude floor).
    g = jax.grad(lambda y: losses.complex_stft_loss(y, x))(jnp.zeros_like(x))
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0


def test_si_sdr_loss_is_minus_the_evaluation_metric_and_level_free():
    from jax_codec.evaluation import metrics

    rng = np.random.default_rng(0)
    x = music(2).astype(np.float32)
    y = (0.7 * x + 0.3 * rng.standard_normal(x.shape) * np.std(x)).astype(np.float32)
    expected = np.mean([metrics.si_sdr(x[b], y[b]) for b in range(2)])
    got = float(losses.si_sdr_loss(jnp.asarray(y), jnp.asarray(x)))
    np.testing.assert_allclose(got, -expected, rtol=1e-4)
    # The estimate's level does not matter (the spectral terms set it)...
    np.testing.assert_allclose(
        float(losses.si_sdr_loss(jnp.asarray(0.01 * y), jnp.asarray(x))), got, rtol=1e-4
    )
    # ...and, unlike the waveform L1, its gradient does not pull an unrelated output to silence:
    # it is orthogonal to the output (no radial component).
    noise = jnp.asarray(rng.standard_normal(x.shape).astype(np.float32))
    g = jax.grad(lambda z: losses.si_sdr_loss(z, jnp.asarray(x)))(noise)
    radial = float(jnp.sum(g * (noise - noise.mean(-1, keepdims=True))))
    assert abs(radial) < 1e-3 * float(jnp.linalg.norm(g)) * float(jnp.linalg.norm(noise))
    g_l1 = jax.grad(lambda z: losses.waveform_l1_loss(z, jnp.asarray(x)))(noise)
    assert float(jnp.sum(g_l1 * noise)) > 0  # L1 descent shrinks it


def test_band_energy_loss_measures_level_not_fine_structure():
    rng = np.random.default_rng(0)
    x = jnp.asarray(0.1 * rng.standard_normal((2, 8820)), jnp.float32)
    other = jnp.asarray(0.1 * rng.standard_normal((2, 8820)), jnp.float32)  # same spectrum
    assert float(losses.band_energy_loss(x, x, 44100)) == 0.0
    # Half the amplitude is a quarter of the power: log10(4) in every band.
    assert float(losses.band_energy_loss(0.5 * x, x, 44100)) == pytest.approx(
        np.log10(4.0), abs=1e-4
    )
    # Another noise of the same level: small, far below what frame-wise log-mel L1 sees.
    assert float(losses.band_energy_loss(other, x, 44100)) < 0.1
    assert float(losses.multi_resolution_mel_loss(other, x, 44100)) > 1.0
    g = jax.grad(lambda y: losses.band_energy_loss(y, x, 44100))(0.5 * x)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).sum()) > 0
