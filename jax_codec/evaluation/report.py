"""What an evaluation writes: results.csv/json (one row per file x codec x setting),
summary.md/json (means with 95% intervals, code usage, notes) and the figures."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from jax_codec.evaluation.stats import summarize

ROW_FIELDS = (
    "file",
    "excerpt_start_s",  # where the measured excerpt starts in the file (--excerpts)
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
    # how the channels were coded: mono, dual mono (a code stream per channel), joint stereo
    # (ours: one stream for the pair; Opus, MP3: the encoders' joint stereo, see baselines.py)
    "channel_coding",
    "code_streams",  # neural: code streams in the file (1 for joint stereo)
    "codec_sample_rate",  # the rate the codec ran at
    "entropy_coded",
    "error",
)


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


def _extent(seg: float, excerpts: int) -> str:
    if not seg:
        return "whole files"
    if excerpts > 1:
        return (
            f"up to {excerpts} excerpts of {_fmt(seg)} s of each, evenly spread; "
            "intervals over files, each the mean of its excerpts"
        )
    return f"up to the first {_fmt(seg)} s of each"


def format_summary(
    summary: Sequence[Mapping],
    metric_names: Sequence[str],
    meta: Mapping,
    code_usage: Mapping[str, Sequence[Mapping]],
    notes: Sequence[str],
) -> str:
    """summary.md: run facts, an overview of means, one table per metric with 95% intervals,
    code usage per level of each neural model, notes."""
    from jax_codec.evaluation.metrics import HIGHER_IS_BETTER, STEREO_METRICS

    seg = meta["segment_seconds"]
    lines = [
        f"# Evaluation of {meta['model']}",
        "",
        f"- model: `{meta['model']}` ({meta['model_source']}), {meta['sample_rate']} Hz, "
        f"{meta['num_quantizers']} quantizers"
        + (", joint stereo (one code stream for both channels)" if meta.get("joint") else ""),
        f"- data: {meta['files']} file(s) from `{meta['data']}` "
        f"({_extent(seg, meta.get('excerpts', 1))}; "
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
    lines.append(f"- metrics: {', '.join(metric_names)}")
    stereo = [m for m in metric_names if m in STEREO_METRICS]
    if stereo:
        lines.append(
            f"- stereo image ({', '.join(stereo)}): on the {meta.get('stereo_files', '?')} "
            "stereo file(s) only (n counts them); `channel_coding` in results.csv says how "
            "each row coded the pair: joint stereo (a joint-stereo model's one code stream; "
            "Opus' coupled stream, LAME's joint stereo) or dual mono (a mono model: a code "
            "stream per channel, twice the bits)"
        )
    lines += [
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


def safe_name(name: str) -> str:
    """`name` with anything but letters, digits and ._- replaced (for file names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def reported_metrics(names: Sequence[str], rows: Sequence[Mapping]) -> list[str]:
    """`names` without the stereo metrics when no row's reference is stereo (they would be
    empty columns and tables)."""
    from jax_codec.evaluation.metrics import STEREO_METRICS

    stereo = any(r.get("channels") == 2 for r in rows)
    return [m for m in names if stereo or m not in STEREO_METRICS]


def write_outputs(p, models, res, output: str, notes: list[str]) -> dict:
    """results.csv/json, summary.md/json and the figures."""
    import dataclasses

    from jax_codec.evaluation import codebook_usage as cu
    from jax_codec.evaluation import metrics as mt

    p = dataclasses.replace(p, metrics=reported_metrics(p.metrics, res.rows))
    ours = models[0]
    for key, where in res.problems.items():
        notes.append(f"{key} ({len(where)} case(s), e.g. {where[0]})")
    notes += [f"skipped {s}" for s in res.skipped]
    for m in p.metrics:
        bad = [
            r
            for r in res.rows
            if not r.get("error")
            and not math.isfinite(r[m])
            and (m not in mt.STEREO_METRICS or r.get("channels") == 2)
        ]
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
        stats = cu.code_usage_from_counts(res.counts[nc.label])
        for s, stride in zip(stats, nc.codec.vq_strides):
            s["stride"] = int(stride)
            s["max_bits"] = int(math.ceil(math.log2(nc.codec.codebook_size)))
        code_usage[nc.label] = stats
    meta = {
        "model": ours.label,
        "model_source": ours.source,
        "sample_rate": ours.codec.sample_rate,
        "num_quantizers": ours.codec.num_quantizers,
        "joint": ours.codec.channels == 2,
        "data": p.data,
        "files": len(p.files) - len(res.skipped),
        "stereo_files": len({r["file"] for r in res.rows if r.get("channels") == 2}),
        "seconds": res.seconds,
        "segment_seconds": p.segment_seconds,
        "excerpts": p.excerpts,
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


def write_figures(output, res, metric_names, models, notes) -> list[str]:
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
        out.append(plots.save(fig, os.path.join(output, f"rd_{safe_name(m)}.png")))
    sr = models[0].codec.sample_rate
    for i, (rel, panels) in enumerate(res.spectrograms):
        fig = plots.spectrogram_comparison(panels, sr, title=rel)
        stem = safe_name(os.path.splitext(rel)[0])
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
        out.append(plots.save(fig, os.path.join(output, f"codes_{safe_name(nc.label)}.png")))
    return [os.path.basename(x) for x in out]
