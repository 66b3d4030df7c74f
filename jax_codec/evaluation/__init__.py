"""Codec evaluation: objective metrics, classic baselines through ffmpeg, plots, the command.

    python -m jax_codec.evaluate --checkpoint runs/try --data songs/ --baselines opus,mp3

    from jax_codec.evaluation import compute_all, round_trip, plots
    scores = compute_all(reference, decoded, 44100)          # [T] or [C, T] float arrays
    opus, kbps = encode_decode(reference, 44100, "opus", 6.0)

- `metrics`: DAC's mel/STFT distances, SI-SDR, loudness, CQT/chroma, ViSQOL, PESQ/STOI (speech),
  the stereo image (mid/side mel, ILD and ICC differences: `STEREO_METRICS`; `compute_all`,
  `available_metrics`, `HIGHER_IS_BETTER`), re-exporting what `spectral_distances` (DAC's
  distances, the input checks) and `stereo_metrics` (the stereo image) define.
- `codebook_usage`: per quantizer level, the share of the codebook used, entropy, perplexity
  (`code_usage`, `code_histograms`).
- `baselines`: Opus, MP3, Vorbis, AAC round trips at a target bitrate (`round_trip`,
  `encode_decode`, `ffmpeg_path`).
- `plots`: `spectrogram_comparison`, `codebook_usage`, `rate_distortion`, `save`, `to_image`.
- `stats`: `measure` (metric values of a row), `mean_ci`, `summarize`.
- `report`: results.csv/json, summary.md/json and figures (`write_outputs`, `format_summary`).
- `run`: the evaluation itself (`evaluate(plan, models, output)`, `neural_round_trip`,
  `load_segment`, `find_audio_files`); `__main__`: the `python -m jax_codec.evaluate` command
  (`main`).

Importing this package is cheap: the names below are loaded from their modules on first use,
so neither JAX nor matplotlib is imported until something needs them.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "metrics": ("compute_all", "available_metrics", "HIGHER_IS_BETTER", "METRICS",
                "MissingDependencyError", "mel_distance", "stft_distance", "si_sdr",
                "loudness_difference", "cqt_distance", "chroma_distance", "visqol", "pesq_wb",
                "stoi", "STEREO_METRICS", "mel_distance_mid", "mel_distance_side",
                "ild_difference", "icc_difference"),
    "baselines": ("round_trip", "encode_decode", "ffmpeg_path", "BaselineError",
                  "BaselineResult", "FFmpegNotFoundError", "matched_round_trip"),
    "codebook_usage": ("code_usage", "code_histograms", "code_usage_from_counts",
                   "flatten_code_usage"),
    "stats": ("measure", "mean_ci", "summarize"),
    "run": ("evaluate", "neural_round_trip"),
    "__main__": ("main", "default_ladder"),
}  # fmt: skip
_SUBMODULES = ("metrics", "codebook_usage", "baselines", "plots", "stats", "report", "run")
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE) + list(_SUBMODULES)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
