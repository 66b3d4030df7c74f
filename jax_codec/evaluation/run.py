"""`python -m jax_codec.evaluate`: a codec against Opus, MP3 (Vorbis, AAC) and other checkpoints.

    python -m jax_codec.evaluate --checkpoint DIR --data PATH [--n_quantizers 1,2,4,8]
        [--baselines opus,mp3,vorbis,aac|none] [--compare DIR[,DIR...]] [--output DIR]
        [--segment_seconds 10] [--max_files N] [--metrics a,b,...] [--speech] [--seed 0]

How each file is measured (one rule for every codec):

- The file's first `--segment_seconds` (0: all of it) are read once, resampled (soxr HQ) to the
  evaluated model's sample rate, mono or stereo as the file is (more channels are folded to
  stereo). That signal is the reference for everything: our codec, the `--compare` models and
  the classic baselines all code it, and every metric compares their output with it at that
  rate. Resampling is therefore never counted as codec error, and all rows share one reference.
  A `--compare` model with another sample rate gets the reference resampled to its rate, and
  its output is resampled back (soxr HQ): the band it cannot code counts against it.
- Our codec runs through the real bitstream, as `python -m jax_codec compress` / `decompress`
  do: windowed encoding (`streaming.iter_encode`), a `.jcodec` file written with
  `bitstream.Writer` (range coded when the checkpoint has entropy priors, `--entropy`), read
  back with `bitstream.Reader` and decoded. Its bitrate is the actual one:
  file size * 8 / duration (headers and chunk framing included).
- Each baseline is run at our actual bitrate for the same file and setting (`--n_quantizers`),
  raised to the lowest bitrate its encoder accepts (`BASELINE_MIN_KBPS`), and its actual
  bitrate (encoded file size, container included) is reported: classic encoders cannot go as
  low as a neural codec and overshoot their targets at low rates, and the rate-distortion
  plots show where they really landed. A setting ffmpeg cannot encode is a row with `error`.
- Decoded signals are clipped to [-1, 1], as writing a 16-bit file would.
- Metrics: `jax_codec.evaluation.metrics.compute_all` (DAC's mel and STFT distances, SI-SDR,
  loudness difference, CQT and chroma distances, ViSQOL; PESQ-WB and STOI only with `--speech`
  or when named in `--metrics`); code usage, entropy and perplexity per level from the codes.

Outputs (in `--output`, default `eval/<model name>`): `results.csv` and `results.json` (one row
per file x codec x setting), `summary.md` and `summary.json` (mean and 95% confidence interval
per metric, codec and setting, and mean actual kbps), `rd_<metric>.png` (rate-distortion, one
line per codec), `spectrogram_<i>_<file>.png` (original and each codec at a middle setting, for
the first `--spectrograms` files) and `codes_<model>.png` (code histograms per level).

Deterministic: files are taken in sorted order, no step draws random numbers (`--seed` only
seeds `--random_init` weights), and metric values are kept to 9 significant digits (ViSQOL's
FFTs vary in the last bit from run to run), so the same inputs give the same results files
(for one ffmpeg build and machine). Errors in the
arguments or the data (missing `--data`, no audio found, ffmpeg missing for a requested
baseline, a bad `--n_quantizers`, ...) print one `error: ...` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2. (The inference commands' own
    `jax_codec.inference.cli.CliError`, raised while loading a model, is treated the same; it is
    not imported here because `jax_codec.inference` imports JAX.)"""


def _is_usage_error(e: BaseException) -> bool:
    if isinstance(e, CliError):
        return True
    cli = sys.modules.get("jax_codec.inference.cli")
    return cli is not None and isinstance(e, cli.CliError)


DEFAULT_BASELINES = ("opus", "mp3")
DEFAULT_SEGMENT_SECONDS = 10.0
DEFAULT_SPECTROGRAMS = 3
# Shorter files are skipped: loudness needs 0.4 s and the mel distance a 2048-sample window.
MIN_SECONDS = 0.5
SPEECH_METRICS = ("pesq_wb_speech", "stoi_speech")
METRIC_DIGITS = 9  # significant digits kept of each metric value (see `measure`)
# The lowest target (kbps, for mono and for stereo) each encoder accepts through ffmpeg: libopus
# refuses below 500 b/s, LAME's lowest CBR rate is 8 kbps, libvorbis refuses less than ~8 (mono)
# or ~12 kbps (stereo) even at 8 kHz; ffmpeg's AAC encoder takes any target.
BASELINE_MIN_KBPS = {
    "opus": (0.5, 0.5),
    "mp3": (8.0, 8.0),
    "vorbis": (8.0, 12.0),
    "aac": (0.0, 0.0),
}
ROW_FIELDS = (
    "file",
    "codec",
    "kind",  # "ours" (--checkpoint / --config), "neural" (--compare) or "baseline"
    "n_quantizers",  # the setting; for baselines, the one of ours they are matched to
    "actual_kbps",  # encoded bytes * 8 / duration / 1000
    "target_kbps",  # baselines: our actual kbps they are matched to
    "encoder_kbps",  # baselines: the target given to the encoder (raised to its minimum)
    "nominal_kbps",  # neural: bit-packed code rate (before entropy coding, no framing)
    "size_bytes",
    "duration_s",
    "sample_rate",  # the evaluation rate (the model's)
    "channels",
    "codec_sample_rate",  # the rate the codec ran at
    "entropy_coded",
    "error",
)


# ---------------------------------------------------------------------------------------------
# Statistics


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[int, float, float]:
    """`(n, mean, half_width)` of the finite `values`: the two-sided `confidence` interval of
    the mean from the t distribution with n - 1 degrees of freedom, `mean ± half_width`.
    NaN half-width for n = 1 (no interval), NaN mean for n = 0."""
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return 0, math.nan, math.nan
    mean = float(v.mean())
    if n == 1:
        return 1, mean, math.nan
    from scipy import stats

    t = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    return n, mean, t * float(v.std(ddof=1)) / math.sqrt(n)


# ---------------------------------------------------------------------------------------------
# Arguments


def parse_n_quantizers(text: str | None) -> list[int] | None:
    """ "1,2,4" -> [1, 2, 4] (sorted, unique); None stays None (the default ladder)."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p.isdigit() or int(p) < 1 for p in parts):
        raise CliError(
            f"--n_quantizers must be a comma-separated list of positive integers, e.g. 1,2,4; "
            f"got {text!r}"
        )
    return sorted({int(p) for p in parts})


def default_ladder(num_quantizers: int) -> list[int]:
    """Powers of two up to the model's quantizer count, and the count itself: 8 -> 1, 2, 4, 8;
    9 -> 1, 2, 4, 8, 9."""
    out, k = [], 1
    while k < num_quantizers:
        out.append(k)
        k *= 2
    return out + [int(num_quantizers)]


def parse_baselines(text: str | None) -> list[str]:
    from jax_codec.evaluation.baselines import CODECS

    if text is None:
        return list(DEFAULT_BASELINES)
    names = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    if names == ["none"]:
        return []
    bad = [n for n in names if n not in CODECS]
    if bad or not names:
        raise CliError(
            f"--baselines: unknown codec(s) {', '.join(bad) or repr(text)}; valid: "
            f"{', '.join(CODECS)} or none"
        )
    return list(dict.fromkeys(names))


def select_metrics(text: str | None, speech: bool) -> list[str]:
    """The metric names to compute: `--metrics` (validated, packages checked), else every
    available music metric, plus the available speech metrics with `--speech`."""
    from jax_codec.evaluation import metrics

    available = metrics.available_metrics()
    if text is None:
        names = [n for n in available if n not in SPEECH_METRICS]
        if speech:
            names += [n for n in SPEECH_METRICS if n in available]
        return names
    names = list(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    if speech:
        names += [n for n in SPEECH_METRICS if n not in names]
    bad = [n for n in names if n not in metrics.METRICS]
    if bad or not names:
        raise CliError(
            f"--metrics: unknown metric(s) {', '.join(bad) or repr(text)}; valid: "
            f"{', '.join(metrics.METRICS)}"
        )
    missing = [n for n in names if n not in available]
    if missing:
        packages = {"visqol": "visqol-python"}
        need = sorted({packages.get(metrics.METRICS[n][1], metrics.METRICS[n][1]) for n in missing})
        raise CliError(
            f"--metrics {', '.join(missing)} need(s) {', '.join(need)}: pip install "
            f"{' '.join(need)} (or pip install 'jax_codec[eval]')"
        )
    return names


def find_audio_files(path: str) -> tuple[str, list[str]]:
    """`(root, relative paths)`: `path` itself when it is a file, else every audio file
    (`jax_codec.data.audio.AUDIO_EXTENSIONS`) under the folder, recursively, sorted."""
    from jax_codec.data.audio import AUDIO_EXTENSIONS
    from jax_codec.data.sources import _list_files

    if not os.path.exists(path):
        raise CliError(f"--data {path}: no such file or directory")
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path)), [os.path.basename(path)]
    files = [f for f in _list_files(path) if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS]
    if not files:
        raise CliError(
            f"--data {path}: no audio files found (looked for {', '.join(AUDIO_EXTENSIONS)}, "
            "recursively)"
        )
    return os.path.abspath(path), files


def load_segment(path: str, sample_rate: int, seconds: float | None) -> np.ndarray:
    """The first `seconds` (None or 0: all) of `path` at `sample_rate`, float32 ``[C, T]`` with
    C = the file's channels (more than two folded to stereo). Raises `BadAudio`."""
    from jax_codec.data import audio

    info = audio.probe(path)
    channels = min(info.channels, 2)
    total = (info.frames * sample_rate) // info.sample_rate
    n = total if not seconds else min(total, int(round(seconds * sample_rate)))
    x = audio.read_window(path, 0, n, sample_rate, channels, info)
    x = np.ascontiguousarray(x.T, dtype=np.float32)
    if not np.isfinite(x).all():
        raise audio.BadAudio("NaN or infinite samples")
    return x


# ---------------------------------------------------------------------------------------------
# Codecs


@dataclasses.dataclass
class NeuralCodec:
    """A loaded checkpoint evaluated through the bitstream."""

    label: str  # row name (the config name, made unique)
    model: object  # `jax_codec.inference.compress.Model`
    priors: np.ndarray | None
    priors_path: str | None
    settings: list[int]  # n_quantizers values
    source: str  # what was loaded, for the summary
    kind: str  # "ours" or "neural"

    @property
    def codec(self):
        return self.model.codec


def _resample(x: np.ndarray, rate_in: int, rate_out: int, length: int | None = None):
    """``[C, T]`` from `rate_in` to `rate_out` (soxr HQ), cut or zero-padded to `length`."""
    import soxr

    y = x if rate_in == rate_out else soxr.resample(x.T, rate_in, rate_out, quality="HQ").T
    if length is not None:
        y = y[:, :length] if y.shape[1] >= length else np.pad(y, ((0, 0), (0, length - y.shape[1])))
    return np.ascontiguousarray(y, dtype=np.float32)


def neural_round_trip(
    nc: NeuralCodec,
    audio: np.ndarray,
    sr: int,
    n_quantizers: int,
    path: str,
    window_frames: int | None = None,
) -> tuple[np.ndarray, dict, tuple[np.ndarray, ...]]:
    """`audio` ``[C, T]`` at `sr` through a `.jcodec` file at `path` and back.

    Writes the file as `python -m jax_codec compress --n_quantizers K` does for a file at the
    model's rate (same header, chunks and entropy coding), reads it back, checks the model
    and decodes it. Returns (decoded ``[C, T]`` at `sr`, facts for the row, the codes per
    level ``[C, F / s_i]`` as read from the file).
    """
    from jax_codec import bitstream
    from jax_codec.inference import streaming as st
    from jax_codec.inference.compress import file_header

    model, codec = nc.model, nc.codec
    rate = codec.sample_rate
    x = _resample(audio, sr, rate)
    channels, length = x.shape
    header, _ = file_header(model, channels, length, n_quantizers, window_frames)
    with bitstream.Writer(path, header, priors=nc.priors) as w:
        for codes in st.iter_encode(codec, model.params, [x], length, n_quantizers, window_frames):
            w.write_chunk([tuple(c[ch] for c in codes) for ch in range(channels)])
    size = os.path.getsize(path)
    with bitstream.Reader(path, priors=nc.priors) as r:
        h = r.header
        bitstream.check_model(h, model.name, model.fingerprint)
        from jax_codec.inference import compress as _cz

        blocks = list(_cz.frame_blocks(r))
    frame_codes = np.concatenate(blocks, axis=1)
    y = np.concatenate(
        list(
            st.iter_decode(codec, model.params, blocks, h.num_frames, h.num_samples, window_frames)
        ),
        axis=1,
    )
    y = _resample(y, rate, sr, audio.shape[1])
    codes = tuple(frame_codes[:, ::s, i] for i, s in enumerate(h.stored_strides))
    duration = audio.shape[1] / sr
    facts = {
        "actual_kbps": size * 8 / duration / 1e3,
        "nominal_kbps": h.nominal_kbps,
        "size_bytes": size,
        "codec_sample_rate": rate,
        "entropy_coded": bool(h.entropy_mode),
    }
    return y, facts, codes


def baseline_round_trip(
    name: str, audio: np.ndarray, sr: int, target_kbps: float, ffmpeg: str
) -> tuple[np.ndarray, dict]:
    """`audio` ``[C, T]`` through a classic codec at `target_kbps` (raised to the encoder's
    minimum); returns (decoded ``[C, T]``, facts for the row)."""
    from jax_codec.evaluation import baselines

    channels = audio.shape[0]
    asked = max(float(target_kbps), BASELINE_MIN_KBPS[name][min(channels, 2) - 1])
    r = baselines.round_trip(audio, sr, name, asked, ffmpeg=ffmpeg)
    return r.audio, {
        "actual_kbps": r.kbps,
        "target_kbps": float(target_kbps),
        "encoder_kbps": asked,
        "size_bytes": r.encoded_bytes,
        "codec_sample_rate": r.encode_rate,
    }


def measure(ref: np.ndarray, est: np.ndarray, sr: int, names: Sequence[str]):
    """`(values, problems)`: each metric of `names` (NaN where it cannot be computed, with the
    reason in `problems`), rounded to `METRIC_DIGITS` significant digits.

    The rounding is what makes repeated runs byte-identical: some metric code (ViSQOL's FFTs,
    BLAS) varies in the last bit or two (~1e-15 relative) with memory alignment.
    """
    from jax_codec.evaluation import metrics

    values, problems = {}, []
    for name in names:
        try:
            v = metrics.compute_all(ref, est, sr, [name])[name]
            values[name] = float(f"{v:.{METRIC_DIGITS}g}") if math.isfinite(v) else v
        except (ValueError, metrics.MissingDependencyError) as e:
            values[name] = math.nan
            problems.append(f"{name}: {_one_line(e)}")
    return values, problems


# ---------------------------------------------------------------------------------------------
# Summary


def summarize(rows: Sequence[Mapping], metric_names: Sequence[str]) -> list[dict]:
    """One entry per (codec, setting), ordered by setting then codec (in the order the rows
    first name them): mean actual kbps, files, and per metric `{n, mean, ci95}` (ci95 = the
    half-width of the 95% interval of the mean; NaN for one file)."""
    order: dict[str, int] = {}
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        order.setdefault(r["codec"], len(order))
        groups.setdefault((r["codec"], r["n_quantizers"]), []).append(r)
    out = []
    for (codec, k), members in sorted(groups.items(), key=lambda g: (g[0][1], order[g[0][0]])):
        _, kbps, kbps_ci = mean_ci(r.get("actual_kbps", math.nan) for r in members)
        entry = {
            "codec": codec,
            "kind": members[0]["kind"],
            "n_quantizers": k,
            "files": len(members),
            "errors": sum(1 for r in members if r.get("error")),
            "kbps": kbps,
            "kbps_ci95": kbps_ci,
            "metrics": {},
        }
        for name in metric_names:
            n, mean, half = mean_ci(r.get(name, math.nan) for r in members)
            entry["metrics"][name] = {"n": n, "mean": mean, "ci95": half}
        out.append(entry)
    return out


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    v = float(v)
    if abs(v) >= 10**digits:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def _arrow(metric: str) -> str:
    from jax_codec.evaluation.metrics import HIGHER_IS_BETTER

    return "↑" if metric in HIGHER_IS_BETTER else "↓"


def format_overview(summary: Sequence[Mapping], metric_names: Sequence[str]) -> str:
    """A markdown table of the means: one row per codec and setting, one column per metric."""
    head = ["codec", "n_q", "kbps"] + [f"{m} {_arrow(m)}" for m in metric_names]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for g in summary:
        cells = [g["codec"], str(g["n_quantizers"]), _fmt(g["kbps"], 3)]
        cells += [_fmt(g["metrics"][m]["mean"]) for m in metric_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_metric_table(summary: Sequence[Mapping], metric: str) -> str:
    """A markdown table for one metric: codec, setting, mean kbps, n, mean, 95% CI."""
    lines = [
        "| codec | n_q | kbps | n | mean | 95% CI (±) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for g in summary:
        s = g["metrics"][metric]
        lines.append(
            f"| {g['codec']} | {g['n_quantizers']} | {_fmt(g['kbps'], 3)} | {s['n']} | "
            f"{_fmt(s['mean'])} | {_fmt(s['ci95'], 3)} |"
        )
    return "\n".join(lines)


def format_summary(
    summary: Sequence[Mapping],
    metric_names: Sequence[str],
    meta: Mapping,
    code_usage: Mapping[str, Sequence[Mapping]],
    notes: Sequence[str],
) -> str:
    """summary.md: run facts, an overview of means, one table per metric with 95% intervals,
    code usage per level of each neural model, notes."""
    from jax_codec.evaluation.metrics import HIGHER_IS_BETTER

    seg = meta["segment_seconds"]
    lines = [
        f"# Evaluation of {meta['model']}",
        "",
        f"- model: `{meta['model']}` ({meta['model_source']}), {meta['sample_rate']} Hz, "
        f"{meta['num_quantizers']} quantizers",
        f"- data: {meta['files']} file(s) from `{meta['data']}` "
        f"({'up to the first ' + _fmt(seg) + ' s of each' if seg else 'whole files'}; "
        f"{meta['seconds']:.1f} s of audio), measured at {meta['sample_rate']} Hz",
    ]
    if meta["compare"]:
        lines.append("- neural codecs compared: " + ", ".join(f"`{c}`" for c in meta["compare"]))
    if meta["baselines"]:
        lines.append(
            "- baselines: " + ", ".join(meta["baselines"]) + " (ffmpeg), each at our actual "
            "bitrate per file and setting, raised to the encoder's minimum; kbps below is what "
            "they actually spent"
        )
    lines += [
        f"- metrics: {', '.join(metric_names)}",
        "",
        "Means over files; the 95% confidence interval of the mean is ± the half-width shown "
        "(t distribution; none for a single file). kbps = mean actual bitrate (encoded bytes "
        "x 8 / duration). n_q = number of quantizers (for baselines: the setting of ours they "
        "are matched to). ↓ lower is better, ↑ higher is better.",
        "",
        "## Overview (means)",
        "",
        format_overview(summary, metric_names),
        "",
    ]
    for m in metric_names:
        better = "higher" if m in HIGHER_IS_BETTER else "lower"
        lines += [f"## {m} ({better} is better)", "", format_metric_table(summary, m), ""]
    for label, levels in code_usage.items():
        if not levels:
            continue
        lines += [
            f"## Code usage: {label} (all files, {len(levels)} levels)",
            "",
            "| level | stride | usage | entropy (bits) | perplexity | codes |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for s in levels:
            lines.append(
                f"| {s['level']} | {s['stride']} | {_fmt(100 * s['usage'], 3)}% | "
                f"{_fmt(s['entropy_bits'])} / {s['max_bits']} | {_fmt(s['perplexity'])} | "
                f"{s['n_codes']} |"
            )
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Output files


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return _jsonable(float(v))
    return v


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "nan"
    return str(v)


def write_rows(rows: Sequence[Mapping], fields: Sequence[str], csv_path: str, json_path: str):
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(fields)
        for r in rows:
            w.writerow([_csv_cell(r.get(k)) for k in fields])
    with open(json_path, "w") as f:
        json.dump([_jsonable({k: r.get(k) for k in fields}) for r in rows], f, indent=1)
        f.write("\n")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


# ---------------------------------------------------------------------------------------------
# The command


def _one_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return "; ".join(lines) or type(e).__name__


def _model_args(args: argparse.Namespace, checkpoint: str | None) -> argparse.Namespace:
    if checkpoint is None:
        return args
    return argparse.Namespace(
        checkpoint=checkpoint, which=args.which, config=None, random_init=False, seed=args.seed
    )


def _load_neural(args, checkpoint, kind, taken: set[str], notes: list[str]) -> NeuralCodec:
    from jax_codec.inference import compress

    m = compress.load(_model_args(args, checkpoint))
    priors_path = None
    if args.entropy != "off":
        priors_path = compress.find_priors(m, None)
        if priors_path is None and args.entropy == "on":
            raise CliError(
                f"--entropy on needs priors for {m.name or '?'}: none found; make them with "
                "`python -m jax_codec priors --checkpoint DIR`"
            )
    priors = None
    if priors_path is not None:
        from jax_codec import bitstream

        priors = bitstream.load_priors(priors_path)
    label = m.name or (os.path.basename(os.path.normpath(checkpoint)) if checkpoint else "model")
    base, i = label, 2
    while label in taken:
        label, i = f"{base}-{i}", i + 1
    taken.add(label)
    nq = m.codec.num_quantizers
    wanted = parse_n_quantizers(args.n_quantizers)
    if wanted is None:
        settings = default_ladder(nq)
    elif kind == "ours":
        if wanted[-1] > nq:
            raise CliError(
                f"--n_quantizers {args.n_quantizers}: the model has {nq} quantizers "
                f"(use values in 1..{nq})"
            )
        settings = wanted
    else:
        settings = [k for k in wanted if k <= nq]
        if len(settings) < len(wanted):
            notes.append(
                f"{label} has {nq} quantizers: --n_quantizers above {nq} were skipped for it"
            )
        if not settings:
            raise CliError(
                f"--compare {checkpoint}: none of --n_quantizers fit its {nq} quantizers"
            )
    if checkpoint:
        source = f"checkpoint `{checkpoint}`"
    else:
        source = f"random init of `{args.config}`, seed {args.seed}"
    return NeuralCodec(label, m, priors, priors_path, settings, source, kind)


@dataclasses.dataclass
class Plan:
    """What to evaluate, from the checked arguments (no model loaded yet)."""

    root: str  # folder the file paths are relative to
    files: list[str]
    baselines: list[str]
    metrics: list[str]
    compare: list[str]
    ffmpeg: str | None


def plan(args: argparse.Namespace) -> Plan:
    """Checks everything that needs no model, so mistakes fail fast (`CliError`)."""
    from jax_codec.evaluation import baselines as bl

    if not args.data:
        raise CliError("--data PATH is required (an audio file or a folder of audio)")
    if bool(args.checkpoint) == bool(args.config):
        raise CliError("give either --checkpoint DIR or --config FILE --random_init")
    parse_n_quantizers(args.n_quantizers)
    names = parse_baselines(args.baselines)
    seg = args.segment_seconds
    if seg is None or not math.isfinite(seg) or seg < 0 or 0 < seg < MIN_SECONDS:
        raise CliError(
            f"--segment_seconds must be at least {MIN_SECONDS} (or 0: whole files), got {seg}"
        )
    if args.max_files is not None and args.max_files < 1:
        raise CliError(f"--max_files must be positive, got {args.max_files}")
    if args.spectrograms < 0:
        raise CliError(f"--spectrograms must be >= 0, got {args.spectrograms}")
    compare = [c.strip() for c in (args.compare or "").split(",") if c.strip()]
    for c in compare:
        if not os.path.exists(c):
            raise CliError(f"--compare {c}: no such checkpoint directory")
    root, files = find_audio_files(args.data)
    if args.max_files:
        files = files[: args.max_files]
    metric_names = select_metrics(args.metrics, args.speech)
    ffmpeg = None
    if names:
        try:
            ffmpeg = bl.ffmpeg_path()
            have = bl.available_encoders(ffmpeg)
        except (bl.FFmpegNotFoundError, bl.BaselineError) as e:
            raise CliError(f"--baselines {','.join(names)} need ffmpeg: {_one_line(e)}") from None
        lacking = [n for n in names if bl.CODECS[n].encoder not in have]
        if lacking:
            encoders = ", ".join(bl.CODECS[n].encoder for n in lacking)
            raise CliError(
                f"the ffmpeg at {ffmpeg} has no {encoders} encoder (for {', '.join(lacking)}): "
                f"{bl.INSTALL_HINT}; or drop them from --baselines"
            )
    return Plan(root, files, names, metric_names, compare, ffmpeg)


@dataclasses.dataclass
class Results:
    """What the per-file loop gathers."""

    rows: list[dict] = dataclasses.field(default_factory=list)
    code_fields: list[str] = dataclasses.field(default_factory=list)
    # Per model, code counts per level at its largest setting (summed over files).
    counts: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)
    problems: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    skipped: list[str] = dataclasses.field(default_factory=list)
    spectrograms: list[tuple[str, dict]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def add(self, row: dict, ref: np.ndarray, est: np.ndarray, sr: int, names: Sequence[str]):
        """Measures `est` against `ref` into `row` and keeps it."""
        values, errs = measure(ref, est, sr, names)
        row.update(values)
        for p in errs:
            self.problems.setdefault(f"{row['codec']}: {p}", []).append(row["file"])
        self.rows.append(row)


def evaluate_file(
    args, p: Plan, models: Sequence[NeuralCodec], res: Results, ref, rel: str, tmp: str, bar
):
    """Every model at each of its settings, and the baselines matched to ours, on one file."""
    from jax_codec.evaluation import baselines as bl
    from jax_codec.evaluation import metrics as mt

    sr = models[0].codec.sample_rate
    base = {"file": rel, "duration_s": ref.shape[1] / sr, "sample_rate": sr}
    base["channels"] = ref.shape[0]
    panels = {"original": ref} if len(res.spectrograms) < args.spectrograms else None
    for nc in models:
        mid = nc.settings[(len(nc.settings) - 1) // 2]
        for k in nc.settings:
            bar.set_postfix_str(f"{rel} {nc.label} n_q={k}", refresh=False)
            jc = os.path.join(tmp, f"{_safe(nc.label)}_{k}.jcodec")
            y, facts, codes = neural_round_trip(nc, ref, sr, k, jc, args.window_frames)
            os.unlink(jc)
            y = np.clip(y, -1.0, 1.0)
            hist = mt.code_histograms(codes, nc.codec.codebook_size)
            usage = mt.flatten_code_usage(mt.code_usage_from_counts(hist))
            res.code_fields += [f for f in usage if f not in res.code_fields]
            row = {**base, "codec": nc.label, "kind": nc.kind, "n_quantizers": k, **facts}
            res.add({**row, **usage}, ref, y, sr, p.metrics)
            if k == nc.settings[-1]:
                c = res.counts.get(nc.label)
                res.counts[nc.label] = hist if c is None else [a + b for a, b in zip(c, hist)]
            if panels is not None and k == mid:
                panels[f"{nc.label}, n_q={k}: {facts['actual_kbps']:.2f} kbps"] = y
            for name in p.baselines if nc.kind == "ours" else ():
                row = {**base, "codec": name, "kind": "baseline", "n_quantizers": k}
                target = facts["actual_kbps"]
                try:
                    yb, bfacts = baseline_round_trip(name, ref, sr, target, p.ffmpeg)
                except bl.BaselineError as e:
                    msg = _one_line(e)[:300]
                    row.update({m: math.nan for m in p.metrics})
                    row.update(target_kbps=target, actual_kbps=math.nan, error=msg)
                    res.rows.append(row)
                    res.problems.setdefault(f"{name}: {msg}", []).append(rel)
                    continue
                yb = np.clip(yb, -1.0, 1.0)
                res.add({**row, **bfacts}, ref, yb, sr, p.metrics)
                if panels is not None and k == mid and name == p.baselines[0]:
                    label = f"{name}, matched to n_q={k}: {bfacts['actual_kbps']:.2f} kbps"
                    panels[label] = yb
            bar.update(1)
    if panels is not None:
        res.spectrograms.append((rel, panels))


def evaluate(args: argparse.Namespace) -> dict:
    """Runs the evaluation `args` describes (the parsed command line); writes the outputs and
    returns a short report."""
    from tqdm import tqdm

    from jax_codec.data.audio import BadAudio

    p = plan(args)
    notes: list[str] = []
    taken = set(p.baselines)
    ours = _load_neural(args, None if args.config else args.checkpoint, "ours", taken, notes)
    models = [ours] + [_load_neural(args, c, "neural", taken, notes) for c in p.compare]
    sr = ours.codec.sample_rate
    output = args.output or os.path.join("eval", _safe(ours.label))
    if os.path.exists(output) and not os.path.isdir(output):
        raise CliError(f"--output {output} exists and is not a directory")
    os.makedirs(output, exist_ok=True)

    res = Results()
    per_file = sum(len(nc.settings) for nc in models)
    bar = tqdm(
        total=len(p.files) * per_file, desc="evaluate", unit="setting", file=sys.stderr,
        disable=None,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="jax_codec_eval_") as tmp:
            for rel in p.files:
                try:
                    ref = load_segment(os.path.join(p.root, rel), sr, args.segment_seconds)
                    if ref.shape[1] < MIN_SECONDS * sr:
                        raise BadAudio(f"shorter than {MIN_SECONDS} s")
                except BadAudio as e:
                    res.skipped.append(f"{rel}: {e}")
                    bar.write(f"skipping {rel}: {e}", file=sys.stderr)
                    bar.update(per_file)
                    continue
                res.seconds += ref.shape[1] / sr
                evaluate_file(args, p, models, res, ref, rel, tmp, bar)
    finally:
        bar.close()
    if not res.rows:
        raise CliError(
            f"--data {args.data}: none of the {len(p.files)} audio file(s) could be used: "
            + "; ".join(res.skipped[:3])
        )
    return write_outputs(args, p, models, res, output, notes)


def write_outputs(args, p: Plan, models, res: Results, output: str, notes: list[str]) -> dict:
    """results.csv/json, summary.md/json and the figures."""
    from jax_codec.evaluation import metrics as mt

    ours = models[0]
    for key, where in res.problems.items():
        notes.append(f"{key} ({len(where)} case(s), e.g. {where[0]})")
    notes += [f"skipped {s}" for s in res.skipped]
    for m in p.metrics:
        bad = [r for r in res.rows if not r.get("error") and not math.isfinite(r[m])]
        if bad:
            r = bad[0]
            notes.append(
                f"{m} is not finite in {len(bad)} row(s) (e.g. {r['codec']} n_q="
                f"{r['n_quantizers']} on {r['file']}: {r[m]}); they are left out of its means"
            )
    fields = list(ROW_FIELDS) + list(p.metrics) + res.code_fields
    write_rows(
        res.rows, fields, os.path.join(output, "results.csv"), os.path.join(output, "results.json")
    )
    summary = summarize(res.rows, p.metrics)
    code_usage = {}
    for nc in models:
        if nc.label not in res.counts:
            continue
        stats = mt.code_usage_from_counts(res.counts[nc.label])
        for s, stride in zip(stats, nc.codec.vq_strides):
            s["stride"] = int(stride)
            s["max_bits"] = int(math.ceil(math.log2(nc.codec.codebook_size)))
        code_usage[nc.label] = stats
    meta = {
        "model": ours.label,
        "model_source": ours.source,
        "sample_rate": ours.codec.sample_rate,
        "num_quantizers": ours.codec.num_quantizers,
        "data": args.data,
        "files": len(p.files) - len(res.skipped),
        "seconds": res.seconds,
        "segment_seconds": args.segment_seconds,
        "baselines": p.baselines,
        "compare": [nc.label for nc in models[1:]],
        "metrics": list(p.metrics),
        "n_quantizers": {nc.label: nc.settings for nc in models},
    }
    with open(os.path.join(output, "summary.md"), "w") as f:
        f.write(format_summary(summary, p.metrics, meta, code_usage, notes))
    with open(os.path.join(output, "summary.json"), "w") as f:
        data = {"run": meta, "summary": summary, "code_usage": code_usage, "notes": notes}
        json.dump(_jsonable(data), f, indent=1)
        f.write("\n")
    figures = write_figures(output, res, p.metrics, models, notes)
    return {
        "output": output,
        "files": meta["files"],
        "rows": len(res.rows),
        "figures": figures,
        "overview": format_overview(summary, p.metrics),
        "notes": notes,
    }


def write_figures(output, res: Results, metric_names, models, notes) -> list[str]:
    """Rate-distortion plots, spectrogram comparisons and code histograms (PNG); file names."""
    try:
        from jax_codec.evaluation import plots

        plots._figure(1, 1)
    except ImportError as e:
        notes.append(f"no figures: {e}")
        return []
    out = []
    for m in metric_names:
        fig = plots.rate_distortion(res.rows, m)
        out.append(plots.save(fig, os.path.join(output, f"rd_{_safe(m)}.png")))
    sr = models[0].codec.sample_rate
    for i, (rel, panels) in enumerate(res.spectrograms):
        fig = plots.spectrogram_comparison(panels, sr, title=rel)
        stem = _safe(os.path.splitext(rel)[0])
        out.append(plots.save(fig, os.path.join(output, f"spectrogram_{i}_{stem}.png")))
    for nc in models:
        if nc.label not in res.counts:
            continue
        counts = res.counts[nc.label]
        fig = plots.codebook_usage(
            counts,
            names=[f"level {i} (stride {s})" for i, s in enumerate(nc.codec.vq_strides)][
                : len(counts)
            ],
            title=f"{nc.label}: code usage at n_q={nc.settings[-1]}, all files",
        )
        out.append(plots.save(fig, os.path.join(output, f"codes_{_safe(nc.label)}.png")))
    return [os.path.basename(x) for x in out]


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as one line (`error: ...`), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from jax_codec.inference.cli import add_model_args

    p = _Parser(
        prog="python -m jax_codec.evaluate",
        description="Evaluate a codec against Opus, MP3 and other checkpoints at matched "
        "bitrates: per-file CSV/JSON, a summary table with 95% intervals, plots.",
    )
    add_model_args(p)
    p.add_argument("--data", help="an audio file or a folder of audio (searched recursively)")
    p.add_argument(
        "--n_quantizers",
        help="comma-separated settings, e.g. 1,2,4,8 (default: powers of two up to all)",
    )
    p.add_argument(
        "--baselines",
        help=f"classic codecs via ffmpeg: opus,mp3,vorbis,aac or none (default: "
        f"{','.join(DEFAULT_BASELINES)})",
    )
    p.add_argument("--compare", help="other checkpoints (comma-separated), evaluated the same way")
    p.add_argument("--output", help="output folder (default: eval/<model name>)")
    p.add_argument(
        "--segment_seconds",
        type=float,
        default=DEFAULT_SEGMENT_SECONDS,
        help="evaluate the first S seconds of each file (0: whole files)",
    )
    p.add_argument("--max_files", type=int, help="evaluate the first N files (sorted)")
    p.add_argument("--metrics", help="comma-separated metric names (default: all available)")
    p.add_argument("--speech", action="store_true", help="add the speech metrics (PESQ, STOI)")
    p.add_argument(
        "--entropy",
        choices=("auto", "on", "off"),
        default="auto",
        help="range code with the checkpoint's priors: auto = when it has them",
    )
    p.add_argument(
        "--spectrograms",
        type=int,
        default=DEFAULT_SPECTROGRAMS,
        help="files to draw spectrogram comparisons for",
    )
    p.add_argument("--window_frames", type=int, help="latent frames per processing window")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = evaluate(args)
    except (Exception, KeyboardInterrupt) as e:
        from jax_codec.bitstream import BitstreamError

        if _is_usage_error(e):
            code, msg = 2, _one_line(e)
        elif isinstance(e, KeyboardInterrupt):
            code, msg = 130, "interrupted"
        elif os.environ.get("JAX_CODEC_DEBUG"):
            raise
        elif isinstance(e, BitstreamError):
            code, msg = 1, _one_line(e)
        elif isinstance(e, OSError):
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            code, msg = 1, f"{where}{e.strerror or _one_line(e)}"
        else:
            code, msg = 1, f"unexpected {type(e).__name__}: {_one_line(e)}"
        print(f"error: {msg}", file=sys.stderr)
        return code
    print(report["overview"])
    print(
        f"wrote {report['output']}: results.csv, results.json ({report['rows']} rows, "
        f"{report['files']} files), summary.md, summary.json, {len(report['figures'])} figures"
    )
    for n in report["notes"]:
        print(f"note: {n}", file=sys.stderr)
    return 0
