"""Would a transmitted side level close joint stereo's side gap? An oracle test, no training.

  python benchmarks/side_level_oracle.py --joint RUN_J/checkpoints/800 \\
      --dual RUN_D/checkpoints/800 --data HELDOUT_DIR --output DIR

A joint-stereo model's side is too quiet on music (4-11 dB) and not silent on near-mono input
(docs/stereo.md). Parametric stereo (HE-AAC v2) sends the inter-channel level as a few bits per
frame. This script asks what that would buy before any model codes it: every held-out excerpt
goes through the joint model (`--n_quantizers`) and the dual-mono one (`--dual_n_quantizers`)
as `.jcodec` files (`evaluation.run.neural_round_trip`); then the joint output's side is
rescaled, frame by frame, so its level relative to the decoded mid equals the reference's
side-to-mid ratio, quantized to `--step_db` and sent every `--hop_frames` code frames (below
`--floor_db` the side is set to zero). The rows are mel, SI-SDR, loudness and chroma
differences, ViSQOL, mid and side mel, level (ILD) and correlation (ICC) differences of each
variant, per excerpt, and the side level's cost in kbps
(the empirical entropy of its quantized deltas, a bound an entropy coder approaches).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

from jax_codec.evaluation.stereo_metrics import STEREO_METRICS

# What a listener notices overall, then the stereo image.
METRICS = (
    "mel_distance",
    "si_sdr",
    "loudness_difference",
    "chroma_distance",
    "visqol",
    *STEREO_METRICS,
)


def frame_energy(x: np.ndarray, hop: int) -> np.ndarray:
    """Mean square of `x` ``[T]`` over consecutive frames of `hop` samples (the last partial)."""
    n = -(-x.shape[0] // hop)
    pad = np.zeros(n * hop, np.float64)
    pad[: x.shape[0]] = x
    return (pad.reshape(n, hop) ** 2).mean(axis=1)


def side_ratio_db(m: np.ndarray, s: np.ndarray, hop: int) -> np.ndarray:
    """The side-to-mid level per frame in dB (-inf where the side is silent)."""
    em, es = frame_energy(m, hop), frame_energy(s, hop)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(es / np.maximum(em, 1e-20))


def quantize_db(r: np.ndarray, step: float, floor: float, ceiling: float = 12.0) -> np.ndarray:
    """`r` rounded to `step` dB (0: not rounded) within [floor, ceiling]; below floor: -inf."""
    q = (
        np.clip(r, floor, ceiling)
        if step <= 0
        else np.clip(np.round(r / step) * step, floor, ceiling)
    )
    return np.where(r < floor, -np.inf, q)


def entropy_kbps(q: np.ndarray, frames_per_second: float) -> float:
    """Empirical entropy of the deltas of the quantized levels (a silent frame is one symbol),
    in kbps at `frames_per_second` values per second."""
    sym = np.where(np.isfinite(q), q, -999.0)
    d = np.diff(sym, prepend=sym[:1])
    _, counts = np.unique(d, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() * frames_per_second / 1e3)


def rescale_side(
    est: np.ndarray, target_db: np.ndarray, hop: int, max_gain_db: float
) -> np.ndarray:
    """`est` ``[2, T]`` with its side scaled per frame of `hop` samples so that its level re
    its own mid is `target_db` (-inf: silent); gains interpolated linearly between frame
    centres, at most `max_gain_db` up."""
    m, s = 0.5 * (est[0] + est[1]), 0.5 * (est[0] - est[1])
    em, es = frame_energy(m, hop), frame_energy(s, hop)
    want = 10.0 ** (np.asarray(target_db, np.float64) / 10.0)  # -inf: 0, a silent side
    g = np.sqrt(want * em / np.maximum(es, 1e-20))
    g = np.minimum(g, 10.0 ** (max_gain_db / 20.0))
    centres = (np.arange(g.shape[0]) + 0.5) * hop
    gain = np.interp(np.arange(est.shape[1]), centres, g)
    s = s * gain
    return np.stack([m + s, m - s]).astype(np.float32)


def measure(ref: np.ndarray, est: np.ndarray, sr: int) -> dict:
    from jax_codec.evaluation.metrics import METRICS as ALL

    return {k: float(ALL[k][0](ref, est, sr)) for k in METRICS}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--joint", required=True, help="joint-stereo checkpoint (work dir or step dir)")
    p.add_argument("--dual", required=True, help="mono checkpoint coding each channel (dual mono)")
    p.add_argument("--data", required=True, help="folder of held-out stereo music")
    p.add_argument("--output", required=True, help="folder for results.json")
    p.add_argument("--n_quantizers", type=int, default=4)
    p.add_argument("--dual_n_quantizers", type=int, default=3)
    p.add_argument("--segment_seconds", type=float, default=10.0)
    p.add_argument("--excerpts", type=int, default=2)
    p.add_argument("--hop_frames", default="1,4", help="side level sent every N code frames")
    p.add_argument("--step_db", default="0,1.5,3", help="quantizer steps in dB (0: unquantized)")
    p.add_argument("--floor_db", type=float, default=-40.0)
    p.add_argument("--max_gain_db", type=float, default=20.0)
    args = p.parse_args(argv)

    from jax_codec.evaluation.run import (
        EvaluatedCodec,
        Plan,
        find_audio_files,
        load_excerpts,
        neural_round_trip,
    )
    from jax_codec.inference.api import load_codec

    os.makedirs(args.output, exist_ok=True)
    root, files = find_audio_files(args.data)
    models = {}
    for name, path, k in (
        ("joint", args.joint, args.n_quantizers),
        ("dual", args.dual, args.dual_n_quantizers),
    ):
        loaded = load_codec(path)
        models[name] = (EvaluatedCodec(name, loaded, [k], path, "ours"), k)
    joint = models["joint"][0].codec
    if joint.channels != 2 or models["dual"][0].codec.channels != 1:
        sys.exit("--joint needs a 2-channel model and --dual a mono one")
    sr = joint.sample_rate
    hop = joint.hop_length
    frame_rate = joint.frame_rate
    plan = Plan(args.data, root, files, [], [], [], None, args.segment_seconds, args.excerpts)
    hops = [int(v) for v in args.hop_frames.split(",")]
    steps = [float(v) for v in args.step_db.split(",")]

    rows, kbps = [], {}
    for rel in files:
        for start, ref in load_excerpts(os.path.join(root, rel), sr, plan):
            if ref.shape[0] != 2:
                continue
            tag = f"{os.path.splitext(os.path.basename(rel))[0]}@{start / sr:.1f}"
            outs = {}
            with tempfile.TemporaryDirectory() as tmp:
                for name, (nc, k) in models.items():
                    y, facts, _ = neural_round_trip(nc, ref, sr, k, os.path.join(tmp, "x.jcodec"))
                    kbps.setdefault(name, []).append(facts["actual_kbps"])
                    outs[name] = np.clip(y, -1.0, 1.0)
            variants = {"dual": outs["dual"], "joint": outs["joint"]}
            rm, rs = 0.5 * (ref[0] + ref[1]), 0.5 * (ref[0] - ref[1])
            for h in hops:
                r = side_ratio_db(rm, rs, hop * h)
                for st in steps:
                    q = quantize_db(r, st, args.floor_db)
                    key = f"joint+side(h{h},q{st:g})"
                    variants[key] = rescale_side(outs["joint"], q, hop * h, args.max_gain_db)
                    kbps.setdefault(key, []).append(entropy_kbps(q, frame_rate / h))
            for key, est in variants.items():
                row = {"excerpt": tag, "variant": key, **measure(ref, est, sr)}
                rows.append(row)
                print(json.dumps(row), flush=True)

    summary = {}
    for key in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == key]
        summary[key] = {m: float(np.mean([r[m] for r in sel])) for m in METRICS}
        base = "joint" if key.startswith("joint") else key
        summary[key]["code_kbps"] = float(np.mean(kbps[base]))
        summary[key]["side_level_kbps"] = float(np.mean(kbps[key])) if key not in models else 0.0
    out = {"args": vars(args), "frame_rate": frame_rate, "rows": rows, "summary": summary}
    with open(os.path.join(args.output, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("| variant | kbps (codes + side level) | " + " | ".join(METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for key, s in summary.items():
        kb = f"{s['code_kbps']:.2f} + {s['side_level_kbps']:.2f}"
        print(f"| {key} | {kb} | " + " | ".join(f"{s[m]:.3f}" for m in METRICS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
