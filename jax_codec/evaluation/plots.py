"""Evaluation figures: spectrogram comparisons, codebook usage, rate-distortion curves, and
the demo's difference spectrograms and code images.

Matplotlib, headless: figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas,
never through `pyplot`, so nothing needs a display, no global figure state builds up, and the
functions are safe to call from a demo app or a training loop. `save(fig, path)` writes a PNG,
`to_image(fig)` gives an RGB ``[H, W, 3]`` uint8 array (e.g. for TensorBoard image summaries).

    from jax_codec.evaluation import plots
    fig = plots.spectrogram_comparison({"original": x, "ours 1.4 kbps": y}, 44100)
    plots.save(fig, "spec.png")

matplotlib is imported when a function is first called (`pip install matplotlib`, part of
`jax_codec[eval]`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# Row fields `rate_distortion` reads (the evaluation's per-file results).
CODEC_KEY = "codec"
SETTING_KEY = "n_quantizers"
RATE_KEY = "actual_kbps"

_FIG_DPI = 100


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install matplotlib (or pip install 'jax_codec[eval]')"
        ) from e
    fig = Figure(figsize=(width, height), dpi=_FIG_DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str | os.PathLike, dpi: int = _FIG_DPI) -> str:
    """Writes `fig` as a PNG (or any format matplotlib knows by the extension) and returns the
    path. The figure stays usable; it holds no global state to release."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # No timestamp or version in the metadata: the same figure gives the same bytes.
    metadata = {"Software": None} if path.lower().endswith(".png") else None
    fig.savefig(path, dpi=dpi, metadata=metadata)
    return path


def to_image(fig) -> np.ndarray:
    """The rendered figure as RGB ``[H, W, 3]`` uint8 (for TensorBoard or a web page)."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


# ---------------------------------------------------------------------------------------------
# Spectrograms


def _mono(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        # [C, T] (channels first, as the evaluation uses) or [T, C]: average the short axis.
        a = a.mean(axis=0) if a.shape[0] <= a.shape[1] else a.mean(axis=1)
    if a.ndim != 1:
        raise ValueError(f"audio must be [T] or [C, T], got shape {np.shape(x)}")
    return np.nan_to_num(a)


def log_spectrogram(
    x: np.ndarray, n_fft: int = 2048, hop_length: int = 512
) -> tuple[np.ndarray, int]:
    """Power spectrogram in dB ``[n_fft // 2 + 1, frames]`` (Hann window, centred frames; the
    channel mix-down), and the frame count. 0 dB = a full-scale sine's peak."""
    a = _mono(x)
    pad = n_fft // 2
    a = np.pad(a, (pad, pad))
    if a.shape[0] < n_fft:
        a = np.pad(a, (0, n_fft - a.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(a, n_fft)[::hop_length]
    window = np.hanning(n_fft + 1)[:-1]
    spec = np.abs(np.fft.rfft(frames * window, axis=-1)) / (window.sum() / 2)
    return 20.0 * np.log10(np.maximum(spec, 1e-10)).T, frames.shape[0]


def spectrogram_comparison(
    signals: Mapping[str, np.ndarray],
    sr: int,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    top_db: float = 80.0,
    max_hz: float | None = None,
    title: str | None = None,
):
    """One spectrogram panel per signal, stacked, on a shared time/frequency/colour scale.

    Args:
      signals: name -> audio ``[T]`` or ``[C, T]`` (mixed down), in display order; the first is
        the reference whose peak sets the colour scale (0 to -`top_db` dB).
      sr: sample rate of every signal, in Hz.
      max_hz: top of the frequency axis (default sr / 2).
    Returns:
      a `matplotlib.figure.Figure`.
    """
    if not signals:
        raise ValueError("spectrogram_comparison needs at least one signal")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    specs = {name: log_spectrogram(x, n_fft, hop_length)[0] for name, x in signals.items()}
    vmax = float(next(iter(specs.values())).max())
    vmin = vmax - top_db
    top = min(max_hz or sr / 2, sr / 2)
    fig = _figure(10.0, 1.0 + 2.2 * len(specs))
    return _spectrogram_panels(fig, specs, sr, hop_length, vmin, vmax, top, title)


# ---------------------------------------------------------------------------------------------
# Codebook usage


def _entropy_bits(counts: np.ndarray) -> float:
    n = counts.sum()
    if n <= 0:
        return math.nan
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum()) + 0.0


def codebook_usage(
    counts: Sequence[np.ndarray] | np.ndarray,
    *,
    names: Sequence[str] | None = None,
    title: str | None = None,
    sort: bool = True,
):
    """Code histograms, one panel per quantizer level.

    Args:
      counts: per level, how often each code was used (``[codebook_size]`` each; e.g.
        `codebook_usage.code_histograms`), or one ``[levels, codebook_size]`` array.
      names: panel titles (default "level i").
      sort: plot the counts sorted from most to least used (a rank-frequency curve, which
        shows dead codes and skew at a glance); False keeps code order.
    Returns:
      a `matplotlib.figure.Figure`; each panel is titled with the level's codebook usage,
      code entropy (bits, of log2(codebook size) possible) and perplexity.
    """
    levels = [np.asarray(c, dtype=np.float64).ravel() for c in counts]
    if not levels:
        raise ValueError("codebook_usage needs the counts of at least one level")
    if names is not None and len(names) != len(levels):
        raise ValueError(f"{len(names)} names for {len(levels)} levels")
    cols = min(4, len(levels))
    rows = -(-len(levels) // cols)
    fig = _figure(3.6 * cols, 0.8 + 2.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (ax, c) in enumerate(zip(axes, levels, strict=False)):
        k = c.size
        used = int((c > 0).sum())
        h = _entropy_bits(c)
        shown = np.sort(c)[::-1] if sort else c
        total = c.sum()
        frac = shown / total if total > 0 else shown
        ax.stairs(frac, np.arange(k + 1), fill=True, color="tab:blue", alpha=0.8)
        ax.set_xlim(0, k)
        ax.set_xlabel("code rank" if sort else "code")
        if i % cols == 0:
            ax.set_ylabel("fraction of codes")
        head = names[i] if names is not None else f"level {i}"
        stats = (
            f"{used}/{k} used, H={h:.2f}/{math.log2(k):.0f} bits, ppl {2.0**h:.0f}"
            if total > 0
            else "no codes"
        )
        ax.set_title(f"{head}\n{stats}", fontsize=9)
    for ax in axes[len(levels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Rate-distortion


def _finite(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rd_points(
    rows: Iterable[Mapping], metric: str
) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per codec, ``(mean kbps, mean metric, 95% CI half-width, n)`` for each bitrate setting,
    sorted by kbps. Rows need `codec`, `n_quantizers` (the setting), `actual_kbps` and the
    metric; rows whose metric is missing or not finite are left out. Rows of one `file` (its
    excerpts) count once, as their mean, as in the summary (`stats.per_file`)."""
    from jax_codec.evaluation.stats import mean_ci, per_file

    groups: dict[str, dict[object, list[Mapping]]] = {}
    for r in rows:
        if _finite(r.get(metric)) is None or _finite(r.get(RATE_KEY)) is None:
            continue
        per = groups.setdefault(str(r[CODEC_KEY]), {})
        per.setdefault(r.get(SETTING_KEY), []).append(r)
    out = {}
    for codec, per in groups.items():
        pts = []
        for members in per.values():
            n, mean, half = mean_ci(per_file(members, metric))
            pts.append((float(np.mean(per_file(members, RATE_KEY))), mean, half, n))
        out[codec] = sorted(pts)
    return out


def rate_distortion(
    rows: Iterable[Mapping],
    metric: str,
    *,
    higher_is_better: bool | None = None,
    log_rate: bool = True,
    title: str | None = None,
):
    """`metric` against actual kbps: one line per codec (its bitrate settings, mean over files,
    with 95% confidence intervals as error bars).

    Args:
      rows: per-file results (dicts with `codec`, `n_quantizers`, `actual_kbps`, `metric`).
      higher_is_better: noted on the axis label; default from `metrics.HIGHER_IS_BETTER`.
      log_rate: logarithmic kbps axis (neural and classic codecs span decades).
    Returns:
      a `matplotlib.figure.Figure`.
    """
    if higher_is_better is None:
        from jax_codec.evaluation.metrics import HIGHER_IS_BETTER

        higher_is_better = metric in HIGHER_IS_BETTER
    points = rd_points(rows, metric)
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    for codec, pts in points.items():
        x = [p[0] for p in pts]
        y = [p[1] for p in pts]
        err = [0.0 if math.isnan(p[2]) else p[2] for p in pts]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=codec)
    if log_rate and any(p[0] > 0 for pts in points.values() for p in pts):
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # Plain numbers at 1, 2, 5 x 10^n (not "2 x 10^0").
        ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("actual bitrate (kbps)")
    ax.set_ylabel(f"{metric} ({'higher' if higher_is_better else 'lower'} is better)")
    ax.grid(True, which="both", alpha=0.3)
    if points:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title or f"{metric} vs bitrate")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Difference spectrograms and codes over time (the demo's figures)


def _spectrogram_panels(fig, specs, sr, hop_length, vmin, vmax, top_hz, title):
    """Stacked spectrogram panels sharing axes and a colour scale (`specs`: name -> dB array)."""
    axes = fig.subplots(len(specs), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    image = None
    for ax, (name, spec) in zip(axes, specs.items(), strict=True):
        duration = spec.shape[1] * hop_length / sr
        image = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=vmin,
            vmax=vmax,
            extent=(0.0, duration, 0.0, sr / 2 / 1000.0),
            interpolation="nearest",
        )
        ax.set_ylim(0.0, top_hz / 1000.0)
        ax.set_ylabel("kHz")
        ax.set_title(name, fontsize=10, loc="left")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="dB", shrink=0.9, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig


def difference_spectrograms(
    reference: np.ndarray,
    estimates: Mapping[str, np.ndarray],
    sr: int,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    top_db: float = 80.0,
    max_hz: float | None = None,
    title: str | None = None,
):
    """Spectrograms of each estimate minus the reference, on the reference's colour scale.

    0 dB is the reference's spectral peak (as in `spectrogram_comparison` with the reference
    first), so a panel reads as the error's level relative to the signal: dark where the codec
    is faithful, bright where it adds or removes energy.

    Args:
      reference: audio ``[T]`` or ``[C, T]`` (mixed down).
      estimates: name -> audio of the reference's shape (time-aligned), in display order.
      sr: sample rate in Hz.
    Returns:
      a `matplotlib.figure.Figure` with one panel per estimate.
    """
    if not estimates:
        raise ValueError("difference_spectrograms needs at least one estimate")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    ref = _mono(reference)
    specs = {}
    for name, x in estimates.items():
        est = _mono(x)
        if est.shape != ref.shape:
            raise ValueError(f"{name}: shape {np.shape(x)} differs from the reference's")
        specs[name] = log_spectrogram(est - ref, n_fft, hop_length)[0]
    vmax = float(log_spectrogram(ref, n_fft, hop_length)[0].max())
    top = min(max_hz or sr / 2, sr / 2)
    fig = _figure(10.0, 1.0 + 2.2 * len(specs))
    return _spectrogram_panels(fig, specs, sr, hop_length, vmax - top_db, vmax, top, title)


def code_image(
    codes: Sequence[np.ndarray],
    strides: Sequence[int],
    frame_rate: float,
    codebook_size: int,
    *,
    channel_names: Sequence[str] | None = None,
    title: str | None = None,
):
    """The codes of each quantizer level over time, as an image (one panel per channel).

    Rows are levels, coarse (long stride) at the top; columns are latent frames, a level of
    stride s holding each code over its s frames; the colour is the code index. Repeated
    colours are a code held over time, speckle is detail the level adds.

    Args:
      codes: per level, ``[F / s_i]`` or ``[C, F / s_i]`` integer codes.
      strides: each level's stride in latent frames.
      frame_rate: latent frames per second (of stride 1).
      codebook_size: codes per codebook (the colour scale).
      channel_names: panel titles (default "channel i", or none for mono).
    Returns:
      a `matplotlib.figure.Figure`.
    """
    if not codes:
        raise ValueError("code_image needs the codes of at least one level")
    if len(strides) < len(codes):
        raise ValueError(f"{len(codes)} levels but {len(strides)} strides")
    levels = [np.atleast_2d(np.asarray(c)) for c in codes]
    channels = levels[0].shape[0]
    if any(c.shape[0] != channels for c in levels):
        raise ValueError("every level needs the same number of channels")
    frames = max(c.shape[1] * s for c, s in zip(levels, strides))
    if channel_names is not None and len(channel_names) != channels:
        raise ValueError(f"{len(channel_names)} names for {channels} channels")
    k = len(levels)
    fig = _figure(10.0, 0.9 + channels * (0.6 + 0.32 * max(k, 3)))
    axes = fig.subplots(channels, 1, sharex=True, squeeze=False)[:, 0]
    image = None
    for ch, ax in enumerate(axes):
        grid = np.zeros((k, frames))
        for i, (c, s) in enumerate(zip(levels, strides)):
            row = np.repeat(c[ch].astype(np.float64), s)[:frames]
            grid[i, : row.shape[0]] = row
        image = ax.imshow(
            grid,
            aspect="auto",
            cmap="nipy_spectral",
            vmin=0,
            vmax=max(codebook_size - 1, 1),
            extent=(0.0, frames / frame_rate, k - 0.5, -0.5),
            interpolation="nearest",
        )
        ax.set_yticks(range(k))
        ax.set_yticklabels([f"{i} (/{s})" for i, s in enumerate(strides[:k])], fontsize=8)
        ax.set_ylabel("level (stride)")
        name = channel_names[ch] if channel_names is not None else None
        if name is None and channels > 1:
            name = f"channel {ch}"
        if name:
            ax.set_title(name, fontsize=10, loc="left")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="code", shrink=0.9, pad=0.01)
    if title:
        fig.suptitle(title)
    return fig
