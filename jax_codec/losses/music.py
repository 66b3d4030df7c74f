"""Music-aware reconstruction terms: constant-Q log-magnitude and onset-weighted log-mel.

Shape key: B batch, T samples, F frames. Waveforms are mono `[B, T]` float32.

Why these help music (on top of the multi-resolution mel loss):

- `cqt_loss`: an STFT spaces its bins linearly, so at 44.1 kHz a 2048-point window has 21.5 Hz
  bins, wider than a semitone below ~370 Hz (A1-A2 are 55 and 110 Hz apart by 3-6 Hz). Mel bands
  are no better there. Bass lines, kick fundamentals and the lower voices of chords are then
  judged only by band energy, so a codec may detune or blur them at no cost. A constant-Q
  transform has a fixed number of bins per octave (12 = one per semitone) with windows that grow
  towards the bass, so a wrong pitch or a smeared partial in the low register moves energy to a
  different bin and is penalised.
- `onset_weighted_loss`: attacks (drum hits, plucks, piano onsets) are short, so frame-averaged
  losses give them little weight, while the typical codec artifacts there (pre-echo before the
  attack, smeared or softened transients) are among the most audible in music. Weighting each
  frame's log-mel error by the target's spectral flux (where energy rises) puts the loss where
  the attacks are. The weights come from the target only and carry no gradient, and have mean 1
  per example, so the term keeps the scale of a plain log-mel L1.

CQT implementation (Brown & Puckette's frequency-domain kernel, as librosa's `cqt` builds it):
librosa's `filters.wavelet` gives the time-domain constant-Q filters (Hann-windowed complex
sinusoids, lengths ~Q * sr / f, centred in a power-of-2 buffer of `n_fft` samples). Each frame's
rectangular-window `rfft` (frames centred on `f * hop`, zero padding) times the filters' FFTs
equals the inner product of the frame with every filter (Parseval), i.e. the exact CQT on the
hop grid with each bin keeping its own window length. Two savings, both exact up to the filters'
energy below `rel_tol` (default 1e-3 = -60 dB of each filter's peak):
  1. Band-limited decimation: the filters are negligible above ~1.4x the top bin, so the signal
     is low-passed and decimated by the largest power of 2 `D` that keeps that band (one FFT of
     the whole clip, truncated, inverse FFT), and frames/FFTs are D times shorter (D = 4 at
     44.1 kHz with the default 84 bins up to B7). librosa instead halves the rate per octave
     with a resampling filter; we keep one rate, so there is no resampling error.
  2. Per-octave blocks: each octave's filters only touch a band of FFT bins, so the kernel is a
     few `[band, bins_per_octave]` matmuls instead of one dense `[n_fft // 2 + 1, n_bins]` one.
The frame length is set by the lowest bin (n_fft = 32768 at 44.1 kHz for fmin = 32.7 Hz, 8192
after decimation); raise `fmin`, lower `filter_scale`, or use `gamma > 0` (variable-Q: shorter
bass windows) to make it cheaper.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import librosa
import numpy as np

from jax_codec.losses.spectral import _PRECISION, frame, magnitude, mel_spectrogram

Array = jax.Array


class CQTKernel(NamedTuple):
    """A frequency-domain CQT kernel for frames of `n_fft` samples at `sample_rate / decimation`.

    Bins `starts[i] : starts[i] + blocks[i].shape[0]` of each frame's rfft, times the complex64
    `blocks[i]` `[band, bins]`, give the next `bins` CQT bins (one block per octave).
    """

    blocks: tuple[np.ndarray, ...]
    starts: tuple[int, ...]
    n_fft: int
    decimation: int


@functools.lru_cache(maxsize=16)
def cqt_kernel(
    sample_rate: int,
    fmin: float,
    n_bins: int,
    bins_per_octave: int,
    hop_length: int,
    filter_scale: float = 1.0,
    gamma: float = 0.0,
    rel_tol: float = 1e-3,
    decimate: bool = True,
) -> CQTKernel:
    """Frequency-domain CQT/VQT kernel, built once on the host from librosa's wavelet filters.

    Scaled as librosa's `cqt(..., scale=True)`. With `decimate`, the kernel is for the signal
    decimated by the largest power of 2 that divides `hop_length` and keeps every filter's band.
    """
    freqs = librosa.cqt_frequencies(n_bins=n_bins, fmin=fmin, bins_per_octave=bins_per_octave)
    _, cutoff = librosa.filters.wavelet_lengths(
        freqs=freqs, sr=sample_rate, filter_scale=filter_scale, gamma=gamma
    )
    if cutoff > sample_rate / 2:
        raise ValueError(
            f"CQT top bin ({freqs[-1]:.0f} Hz, filter cutoff {cutoff:.0f} Hz) exceeds Nyquist "
            f"({sample_rate / 2:.0f} Hz); lower n_bins or fmin"
        )
    basis, lengths = librosa.filters.wavelet(
        freqs=freqs,
        sr=sample_rate,
        window="hann",
        filter_scale=filter_scale,
        pad_fft=True,
        norm=1,
        gamma=gamma,
    )
    n_fft = basis.shape[1]
    # As librosa: a frame must span at least two hops, else frames would skip samples.
    n_fft = max(n_fft, int(2 ** (1 + np.ceil(np.log2(hop_length)))))
    # Centre-pad (librosa pads at the end here, which would shift the filters off-centre).
    extra = n_fft - basis.shape[1]
    basis = np.pad(basis, [(0, 0), (extra // 2, extra - extra // 2)])
    # librosa scales the basis by lengths / n_fft before the FFT and the output by
    # 1 / sqrt(lengths) (scale=True).
    scale = (np.sqrt(lengths) / n_fft)[:, None]
    spectra = np.fft.fft(basis, axis=1)[:, : n_fft // 2 + 1] * scale
    mag = np.abs(spectra)
    support = mag >= rel_tol * mag.max(axis=1, keepdims=True)  # [n_bins, n_fft // 2 + 1]
    top = int(np.nonzero(support.any(axis=0))[0][-1])  # highest FFT bin any filter needs

    decimation = 1
    while (
        decimate
        and hop_length % (2 * decimation) == 0
        and top < n_fft // (4 * decimation)  # strictly below the decimated Nyquist bin
    ):
        decimation *= 2
    if decimation > 1:
        # Sampling a band-limited filter every D samples keeps its inner products with the
        # (equally band-limited) decimated signal, up to a factor D: sum_n a[n] b[n] =
        # D * sum_m a[mD] b[mD]. The FFT bins below the new Nyquist are unchanged in Hz.
        n_fft //= decimation
        spectra = np.fft.fft(basis[:, ::decimation], axis=1)[:, : n_fft // 2 + 1]
        spectra = spectra * scale * decimation**2
        support = support[:, : n_fft // 2 + 1]

    blocks, starts = [], []
    for lo_bin in range(0, n_bins, bins_per_octave):
        rows = slice(lo_bin, min(n_bins, lo_bin + bins_per_octave))
        used = np.nonzero(support[rows].any(axis=0))[0]
        first, last = int(used[0]), int(used[-1]) + 1
        block = np.ascontiguousarray(spectra[rows, first:last].T).astype(np.complex64)
        block.setflags(write=False)  # shared through the cache
        blocks.append(block)
        starts.append(first)
    return CQTKernel(tuple(blocks), tuple(starts), n_fft, decimation)


def _decimate(x: Array, factor: int) -> Array:
    """Ideal (FFT brick-wall) low-pass and keep every `factor`-th sample; `T % factor == 0`."""
    length = x.shape[-1]
    spec = jnp.fft.rfft(x, axis=-1)[..., : length // (2 * factor)]
    spec = jnp.pad(spec, [(0, 0)] * (x.ndim - 1) + [(0, 1)])  # zero new Nyquist bin
    return jnp.fft.irfft(spec, n=length // factor, axis=-1) / factor


def cqt(
    x: Array,
    sample_rate: int,
    fmin: float = 32.7,
    n_bins: int = 84,
    bins_per_octave: int = 12,
    hop_length: int = 512,
    filter_scale: float = 1.0,
    gamma: float = 0.0,
    decimate: bool = True,
) -> Array:
    """Constant-Q (variable-Q if `gamma > 0`) transform: `[B, T] -> complex64 [B, F, n_bins]`.

    F = 1 + T // hop_length; frame f is centred on sample `f * hop_length` (zero padding, as
    librosa's default). Bin k is centred at `fmin * 2 ** (k / bins_per_octave)` Hz; values match
    `librosa.cqt(..., scale=True)` up to librosa's resampling error. `decimate=False` runs every
    FFT at the full rate (same values up to the kernel's -60 dB truncation, slower).
    """
    kernel = cqt_kernel(
        int(sample_rate),
        float(fmin),
        int(n_bins),
        int(bins_per_octave),
        int(hop_length),
        float(filter_scale),
        float(gamma),
        decimate=bool(decimate),
    )
    factor = kernel.decimation
    n_frames = 1 + x.shape[-1] // hop_length
    full_fft = kernel.n_fft * factor
    # Centre the frames, and round the length up to a multiple of the decimation factor.
    right = full_fft // 2 + (-x.shape[-1]) % factor
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(full_fft // 2, right)])
    if factor > 1:
        x = _decimate(x, factor)
    # No analysis window: each filter in the kernel carries its own (shorter) Hann window.
    frames = frame(x, kernel.n_fft, hop_length // factor)[..., :n_frames, :]
    spec = jnp.fft.rfft(frames, axis=-1)
    outputs = [
        jnp.matmul(spec[..., s : s + b.shape[0]], jnp.asarray(b), precision=_PRECISION)
        for s, b in zip(kernel.starts, kernel.blocks, strict=True)
    ]
    return jnp.concatenate(outputs, axis=-1)


def cqt_loss(
    pred: Array,
    target: Array,
    sample_rate: int,
    fmin: float = 32.7,
    n_bins: int = 84,
    bins_per_octave: int = 12,
    hop_length: int = 512,
    filter_scale: float = 1.0,
    gamma: float = 0.0,
    clamp_eps: float = 1e-5,
) -> Array:
    """L1 between log10 CQT magnitudes (clamped at `clamp_eps`) of `pred`, `target` `[B, T]`.

    Returns a scalar averaged over batch, frames and bins. The default 84 bins cover C1 (32.7 Hz)
    to B7 (3.95 kHz), the range where linear bins are coarser than pitch.
    """
    kwargs = dict(
        sample_rate=sample_rate,
        fmin=fmin,
        n_bins=n_bins,
        bins_per_octave=bins_per_octave,
        hop_length=hop_length,
        filter_scale=filter_scale,
        gamma=gamma,
    )
    pred_mag = magnitude(cqt(pred, **kwargs))
    target_mag = magnitude(cqt(jax.lax.stop_gradient(target), **kwargs))
    log_pred = jnp.log10(jnp.maximum(pred_mag, clamp_eps))
    log_target = jnp.log10(jnp.maximum(target_mag, clamp_eps))
    return jnp.mean(jnp.abs(log_pred - log_target))


def _log_mel(
    x: Array, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, clamp_eps: float
) -> Array:
    mel = mel_spectrogram(x, sample_rate, n_fft, hop_length, n_mels)
    return jnp.log10(jnp.maximum(mel, clamp_eps))


def _flux_weights(
    target_log_mel: Array,
    n_samples: int,
    n_fft: int,
    hop_length: int,
    spread_frames: int,
    flux_floor: float,
) -> Array:
    """`[B, F, M]` log-mel of a `n_samples`-long target -> `[B, F]` weights, mean 1 over F."""
    rise = jax.nn.relu(jnp.diff(target_log_mel, axis=1)).mean(axis=-1)
    # Frames whose window reaches into the centring padding see the reflected signal, whose kink
    # at the clip boundary looks like an attack in every example; rises that involve such frames
    # are ignored (frame f spans samples [f * hop - n_fft / 2, f * hop + n_fft / 2)).
    first_full = -(-(n_fft // 2) // hop_length)
    last_full = (n_samples - n_fft // 2) // hop_length
    frame_idx = np.arange(1, target_log_mel.shape[1])
    valid = (frame_idx - 1 >= first_full) & (frame_idx <= last_full)
    flux = jnp.pad(rise * valid, [(0, 0), (1, 0)])  # frame 0 has no predecessor
    if spread_frames > 0:
        # Widen each onset over +-spread_frames: pre-echo lands in the frames BEFORE the onset
        # frame and smearing in those after, and both are the errors we want to emphasise.
        width = 2 * spread_frames + 1
        flux = jax.lax.reduce_window(
            flux,
            -jnp.inf,
            jax.lax.max,
            (1, width),
            (1, 1),
            [(0, 0), (spread_frames, spread_frames)],
        )
    # The floor keeps steady or silent examples from dividing by ~0; it makes weights tend to 1
    # (a plain log-mel L1) when an example has no onsets, and keeps every weight > 0.
    weights = (flux + flux_floor) / (flux.mean(axis=1, keepdims=True) + flux_floor)
    return jax.lax.stop_gradient(weights)


def onset_weights(
    target: Array,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    clamp_eps: float = 1e-5,
    spread_frames: int = 2,
    flux_floor: float = 0.01,
) -> Array:
    """Per-frame transient weights of `target` `[B, T]` -> `[B, F]`, mean 1 per example.

    Spectral flux: the mean over mel bands of the positive frame-to-frame rise of log10 mel
    magnitude (ignoring frames that overlap the clip edges), max-filtered over +-`spread_frames`,
    plus `flux_floor` (log10 units), divided by its mean over frames. Carries no gradient.
    """
    log_mel = _log_mel(
        jax.lax.stop_gradient(target), sample_rate, n_fft, hop_length, n_mels, clamp_eps
    )
    return _flux_weights(log_mel, target.shape[-1], n_fft, hop_length, spread_frames, flux_floor)


def onset_weighted_loss(
    pred: Array,
    target: Array,
    sample_rate: int,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 80,
    clamp_eps: float = 1e-5,
    spread_frames: int = 2,
    flux_floor: float = 0.01,
) -> Array:
    """Log-mel L1 per frame, weighted by the target's onset weights; `[B, T]` pair -> scalar.

    `mean_{b,f} w[b, f] * mean_m |log10 mel_pred - log10 mel_target|`, `w` from
    `onset_weights` (same arguments). With constant weights this is the plain log-mel L1.
    """
    args = (sample_rate, n_fft, hop_length, n_mels, clamp_eps)
    target_log_mel = _log_mel(jax.lax.stop_gradient(target), *args)
    pred_log_mel = _log_mel(pred, *args)
    weights = _flux_weights(
        target_log_mel, target.shape[-1], n_fft, hop_length, spread_frames, flux_floor
    )
    frame_error = jnp.abs(pred_log_mel - target_log_mel).mean(axis=-1)
    return jnp.mean(weights * frame_error)
