"""Joint stereo against dual mono: the same training budget on real stereo music, held out.

  python benchmarks/joint_vs_dual_mono.py --train_dir=/tmp/music/train \
      --heldout_dir=/tmp/music/heldout --steps=500

Trains the models of `--models` (default: `preset,dual_mono_preset`) with the real command
(`python -m jax_codec.train`), one after the other (`--jobs 2`: two at a time, each on its
own cores), from scratch, on the same stereo files for
the same number of steps:

- `preset`: `configs/music48.py:runlocal` as it is: one code stream for the stereo pair
  (mid/side at the first and last convolutions), losses on L, R, mid and side;
- `dual_mono_preset`: the same with `model.channels=1` and `data.channels=2` (each channel of
  a stereo crop is its own batch row), so a stereo file costs two code streams;

and the ablations behind the preset (`MODELS`; those named without `plain` keep DAC's
quantizer, the preset's until 2026-12-06), e.g.:

- `joint`: the preset with DAC's quantizer, on four 0.2 s crops per step;
- `joint_rows`: the same with `discriminator.stereo=rows` (the preset's default, spelled
  out: the discriminators see each channel as its own mono example);
- `joint_channels`: the same with `discriminator.stereo=channels` (the discriminators see
  the pair as two input channels: the ablation behind the preset's "rows");
- `joint_lr`: the same with `model.stereo=lr` (the convolutions see left and right, not mid
  and side: the ablation behind the preset's choice);
- `dual_mono`: the same with `model.channels=1` and `data.channels=2`.

Then one `python -m jax_codec evaluate --checkpoint joint --compare <the others>` on the
held-out tracks (whole tracks never seen in training), with Opus and MP3 at each setting's actual
bitrate. The dual-mono rows spend twice the bits of a joint row with the same number of
codebooks: compare rows at similar kbps, or the rate-distortion plots in the evaluation folder.
Writes benchmarks/results/joint_vs_dual_mono_<date>.json (the evaluation's summary, the runs'
commands and wall times, and the paired differences) and prints a markdown table of the stereo
metrics, then `--joint` minus each other model file by file at the nearest bitrate (`paired`):
the mean difference with its 95% interval over files and on how many files `--joint` is better;
the same at exactly `--joint`'s bitrate (`paired_at_equal_rate`: the other model's curve on
each file interpolated in log kbps, files outside its range of rates left out);
and, for each metric of `--equal_quality`, how many bits each other model needs to match
`--joint` on each file (its rate-distortion curve on the file, interpolated in log kbps): the
median ratio to `--joint`'s bits, on how many files it needs more, and a sign test.
`--excerpts N` measures N excerpts of `--segment_seconds` spread over each held-out file (a file
counts once, as their mean); `--seed` sets every run's `train.seed`;
`--reuse` keeps runs that reached `--steps`, `--resume` continues shorter ones to it; `--joint` names the model
the others are compared with (e.g. `--joint joint_qd25 --models joint_qd25,dual_mono_qd25`).

Real music: Debian's free soundtracks (`apt-get install hyperrogue-music asc-music`), never
committed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import queue
import shutil
import subprocess
import sys
import time

# The crops of the runs below (those of the preset's runlocal variant until 2026-12-05): four
# rows of 0.2 s. The preset now has one row of 1.0 s (see the `_seg1` models).
_SHORT = ["--config.train.batch_size=4", "--config.train.segment_seconds=0.2"]
# Joint at dual mono's compute and audio per step: dual mono runs its network once per channel
# (batch_size rows = half as many pairs); this runs a wider network once per pair, on as many
# pairs per step as dual mono.
_WIDE = [
    "--config.model.encoder_width=12",
    "--config.model.decoder_width=128",
    "--config.train.batch_size=2",
    "--config.train.segment_seconds=0.2",
]
# The wide joint model at dropout 0.25 on the preset's own crops (one pair of 1.0 s per step).
_WIDE_SEG1 = [
    "--config.model.encoder_width=12",
    "--config.model.decoder_width=128",
    "--config.model.quantizer_dropout=0.25",
]
# name -> overrides of the preset (the run's name labels its rows in the evaluation).
MODELS = {
    "joint": _SHORT,
    "joint_rows": [*_SHORT, "--config.discriminator.stereo=rows"],
    "joint_channels": [*_SHORT, "--config.discriminator.stereo=channels"],
    "joint_lr": [*_SHORT, "--config.model.stereo=lr"],
    "dual_mono": [*_SHORT, "--config.model.channels=1", "--config.data.channels=2"],
    # Quantizer dropout 0.25 instead of DAC's 0.5: the upper levels train on more examples.
    "joint_qd25": [*_SHORT, "--config.model.quantizer_dropout=0.25"],
    "dual_mono_qd25": [
        *_SHORT,
        "--config.model.channels=1",
        "--config.data.channels=2",
        "--config.model.quantizer_dropout=0.25",
    ],
    "joint_wide": _WIDE,
    "joint_wide_qd25": [*_WIDE, "--config.model.quantizer_dropout=0.25"],
    # The same with the side's reconstruction losses weighted 3x (half the per-signal weight).
    "joint_wide_qd25_side3": [
        *_WIDE,
        "--config.model.quantizer_dropout=0.25",
        "--config.loss.stereo_weights=(1.0, 1.0, 1.0, 3.0)",
    ],
    # The same with a silenced span in a quarter of the crops (data.augment.gap_prob).
    "joint_wide_qd25_gap": [
        *_WIDE,
        "--config.model.quantizer_dropout=0.25",
        "--config.data.augment.gap_prob=0.25",
    ],
    # The same with the span attenuated by 40 dB instead of silenced (data.augment.gap_depth_db).
    "joint_wide_qd25_gap40": [
        *_WIDE,
        "--config.model.quantizer_dropout=0.25",
        "--config.data.augment.gap_prob=0.25",
        "--config.data.augment.gap_depth_db=-40",
    ],
    # The same with the side 12 dB louder at the encoder's input (model.side_gain).
    "joint_wide_qd25_sg4": [
        *_WIDE,
        "--config.model.quantizer_dropout=0.25",
        "--config.model.side_gain=4",
    ],
    # Joint wide with dual mono's latent width for the pair (two mono latents of 64 dims).
    "joint_wide_lat128_qd25": [
        *_WIDE,
        "--config.model.latent_dim=128",
        "--config.model.quantizer_dropout=0.25",
    ],
    # Delayed fusion: the encoder's first two and the decoder's last two blocks code mid and
    # side apart (shared weights, as dual mono's per-channel network), the middle jointly; at
    # the preset's widths on dual mono's pairs per step, about dual mono's compute.
    "joint_split2_qd25": [
        *_SHORT,
        "--config.model.stereo_split_blocks=2",
        "--config.train.batch_size=2",
        "--config.model.quantizer_dropout=0.25",
    ],
    # Crops longer than the codec's receptive field (32 frames): one pair of 1.0 s per step
    # (the preset's runlocal crops), the same audio per step as the wide runs above.
    "joint_wide_qd25_seg1": _WIDE_SEG1,
    # The same with gaps 40 dB down in a quarter of the crops (as `joint_wide_qd25_gap40`).
    "joint_wide_qd25_gap40_seg1": [
        *_WIDE_SEG1,
        "--config.data.augment.gap_prob=0.25",
        "--config.data.augment.gap_depth_db=-40",
    ],
    # The same with a fifth of the crops made mono (L = R): a silent side should stay silent,
    # as it does for free in dual mono (data.augment.mono_prob).
    "joint_wide_qd25_mono20_seg1": [*_WIDE_SEG1, "--config.data.augment.mono_prob=0.2"],
    "dual_mono_qd25_seg1": [
        "--config.model.channels=1",
        "--config.data.channels=2",
        "--config.train.batch_size=2",
        "--config.model.quantizer_dropout=0.25",
    ],
}
# The two `_seg1` runs with the dead-code EMA slowed to span 8 uses of a uniformly used code
# (`train.dead_code_min_hits`): joint's one pair per step otherwise restarts live codes by
# chance (measured: benchmarks/README.md, "A slower dead-code EMA").
MODELS["joint_wide_qd25_seg1_mh8"] = [*_WIDE_SEG1, "--config.train.dead_code_min_hits=8"]
MODELS["dual_mono_qd25_seg1_mh8"] = [
    *MODELS["dual_mono_qd25_seg1"],
    "--config.train.dead_code_min_hits=8",
]
# The preset's own widths (encoder 8, decoder 96, not 12 and 128) on its own crops: at runlocal's
# learning rate the wide networks' latents blow up in the first 100 steps and their first
# codebook collapses, dual mono's too (`dual_mono_wide_qd25_seg1_mh8`); the preset's do not
# (benchmarks/README.md, "The wide networks' codes collapse"). Half dual mono's codec network
# per step, about its training time (the discriminators and losses see each channel in both).
MODELS["joint_qd25_seg1_mh8"] = [
    "--config.model.quantizer_dropout=0.25",
    "--config.train.dead_code_min_hits=8",
]
# The joint preset with each level's output fitted to its input in the latent space
# (`loss.residual_weight`), so that a level codes what the earlier ones left (docs/training.md,
# "Does each codebook code what the others left?").
MODELS["joint_qd25_seg1_mh8_res1"] = [
    *MODELS["joint_qd25_seg1_mh8"],
    "--config.loss.residual_weight=1.0",
]
MODELS["joint_qd25_seg1_mh8_res10"] = [
    *MODELS["joint_qd25_seg1_mh8"],
    "--config.loss.residual_weight=10.0",
]
# EnCodec's quantizer (`PlainVQ`: Euclidean codes in the 64-dim latent, no projections),
# whose levels do code what the earlier ones left (docs/training.md, "Does each codebook code
# what the others left?"); its codebooks learn from the codebook loss ...
PLAIN = ["--config.model.quantizer=plain", "--config.model.codebook_dim=64"]
MODELS["joint_plain"] = [*MODELS["joint_qd25_seg1_mh8"], *PLAIN]
MODELS["dual_mono_plain"] = [*MODELS["dual_mono_qd25_seg1_mh8"], *PLAIN]
# ... or, as EnCodec's do, by moving each used code towards the mean of what it coded
# (`train.codebook_ema_decay`), which follows the encoder's output as it shrinks.
PLAIN_EMA = [*PLAIN, "--config.train.codebook_ema_decay=0.9", "--config.loss.codebook_weight=0"]
MODELS["joint_plain_ema"] = [*MODELS["joint_qd25_seg1_mh8"], *PLAIN_EMA]
MODELS["dual_mono_plain_ema"] = [*MODELS["dual_mono_qd25_seg1_mh8"], *PLAIN_EMA]
MODELS["dual_mono_wide_qd25_seg1_mh8"] = [
    *MODELS["dual_mono_qd25_seg1_mh8"],
    "--config.model.encoder_width=12",
    "--config.model.decoder_width=128",
]

# The models above are overrides of the preset as it was until 2026-12-06, with DAC's
# quantizer and codebook loss; the preset now has EnCodec's quantizer and codebook update (the
# `*_plain_ema` settings). They keep the old settings wherever they do not set their own, so
# that each still trains what its results were measured on.
DAC_QUANTIZER = {
    "model.quantizer": "factorized",
    "model.codebook_dim": "8",
    "model.quantizer_dropout": "0.5",
    "train.codebook_ema_decay": "0.0",
    "train.dead_code_min_hits": "0.0",
    "loss.codebook_weight": "1.0",
}


def _with_dac_quantizer(flags: list[str]) -> list[str]:
    given = {f.removeprefix("--config.").partition("=")[0] for f in flags}
    return [f"--config.{k}={v}" for k, v in DAC_QUANTIZER.items() if k not in given] + flags


MODELS = {name: _with_dac_quantizer(flags) for name, flags in MODELS.items()}
# The preset as it is, and the same coding each channel as mono (one 1 s pair per step: two
# mono rows).
MODELS["preset"] = []
MODELS["dual_mono_preset"] = [
    "--config.model.channels=1",
    "--config.data.channels=2",
    "--config.train.batch_size=2",
]
# The preset with the side 6 dB louder at the encoder's input (`model.side_gain`).
MODELS["preset_sg2"] = ["--config.model.side_gain=2"]
# The preset at dual mono's compute per step: a wider network once per pair (encoder 12,
# decoder 128; about twice the preset's codec FLOPs), against `dual_mono_preset`'s network run
# once per channel. With DAC's quantizer these widths lost their first codebook
# (`joint_wide_qd25_seg1_mh8`); the preset's quantizer is EnCodec's.
MODELS["preset_wide"] = ["--config.model.encoder_width=12", "--config.model.decoder_width=128"]
# The preset with the side's reconstruction losses weighted 3x (half the per-signal weight).
MODELS["preset_side3"] = ["--config.loss.stereo_weights=(1.0, 1.0, 1.0, 3.0)"]
# The preset with its decoder's last, full-rate block as wide as the one before it (12
# channels, not 6), so that mid and side are not made from the 6 channels a mono channel gets.
MODELS["preset_minw12"] = ["--config.model.decoder_min_width=12"]
# The preset whose decoder makes its side from its decoded mid: 8 learned bands of the mid,
# each times a gain per frame from the latent (ramped over the frame), plus its own side output.
MODELS["preset_sfm8"] = ["--config.model.side_from_mid=8"]
# The preset with a second decoder, as wide as its own, that makes the side from the same latent
# (the mid's decoder makes the mid only): the side gets decoder layers of its own, as each
# channel has in dual mono; the encoder and the code stream stay joint.
MODELS["preset_sd96"] = ["--config.model.side_decoder_width=96"]
# SpectroStream's delayed fusion on the preset's recipe: left and right each through the
# encoder's first conv and first two blocks and the decoder's last two blocks and last conv
# (the same weights for both, as dual mono's network), joint in between. About dual mono's
# codec compute per pair at the preset's widths (the wider networks lose their codes).
MODELS["preset_lr_split2"] = ["--config.model.stereo=lr", "--config.model.stereo_split_blocks=2"]
# The preset with a fifth of its training crops made mono (L = R), so that it meets a silent
# side: the held-out MP3 tracks' near-mono passages are where it loses the side to dual mono.
MODELS["preset_mono20"] = ["--config.data.augment.mono_prob=0.2"]
# The same with a gate per frame on the decoded side (`model.side_gate`), so that a near-mono
# passage can decode with its side far below the mid.
MODELS["preset_gate_mono20"] = [*MODELS["preset_mono20"], "--config.model.side_gate=True"]
# The preset before its quiet spans (configs/music48.py has `data.augment.gap_prob=0.25`,
# `gap_depth_db=-40` since 2026-12-07), and its dual-mono twin: the runs compared before then.
NO_GAPS = ["--config.data.augment.gap_prob=0"]
MODELS["preset_nogap"] = NO_GAPS
MODELS["dual_mono_preset_nogap"] = [*MODELS["dual_mono_preset"], *NO_GAPS]
# Every model above but the preset and its twin was measured without quiet spans: keep it so.
for _name, _flags in MODELS.items():
    if _name not in ("preset", "dual_mono_preset") and not any("gap_prob" in f for f in _flags):
        MODELS[_name] = [*_flags, *NO_GAPS]
# The preset (its quiet spans included) with bits only the side reads: a second decoder as wide
# as its own makes the side from the joint latent and a side latent of its own; the third of
# the four levels quantizes that side latent instead of the joint one (same rates, same code
# stream shape), so from 1.23 kbps up the side has codes of its own, as dual mono's does.
MODELS["preset_side_bits"] = [
    "--config.model.side_decoder_width=96",
    "--config.model.side_latent_dim=64",
    "--config.model.side_levels=(2,)",
]


METRICS = (
    "mel_distance",
    "mel_distance_mid",
    "mel_distance_side",
    "ild_difference",
    "icc_difference",
    "si_sdr",
    "visqol",
)


def last_checkpoint(workdir: str) -> int:
    """The latest step saved completely in a run's work dir (0 when none)."""
    from jax_codec.inference.api import latest_finished_step

    return latest_finished_step(os.path.join(workdir, "checkpoints")) or 0


def cpu_groups(jobs: int) -> list[set[int] | None]:
    """The CPUs this process may use, split into `jobs` disjoint groups (one per concurrent
    training run, so that each keeps its own cores), or `[None]` for one job (no pinning)."""
    if jobs <= 1 or not hasattr(os, "sched_getaffinity"):
        return [None]
    cpus = sorted(os.sched_getaffinity(0))
    if jobs > len(cpus):
        raise SystemExit(f"--jobs={jobs}: this machine lets this process use {len(cpus)} CPUs")
    return [set(cpus[i::jobs]) for i in range(jobs)]


def train_all(names: list[str], args) -> dict[str, dict]:
    """`train` of every model, `args.jobs` at a time, each pinned to its own group of CPUs."""
    groups = cpu_groups(getattr(args, "jobs", 1))
    if len(groups) == 1:
        return {name: train(name, args) for name in names}
    free: queue.SimpleQueue = queue.SimpleQueue()  # the groups not in use
    for g in groups:
        free.put(g)

    def one(name):
        cpus = free.get()
        try:
            return train(name, args, cpus=cpus)
        finally:
            free.put(cpus)

    with concurrent.futures.ThreadPoolExecutor(len(groups)) as pool:
        return dict(zip(names, pool.map(one, names)))


def train(name: str, args, cpus: set[int] | None = None) -> dict:
    workdir = os.path.join(args.workdir, name)
    if args.reuse and os.path.isdir(os.path.join(workdir, "checkpoints", str(args.steps))):
        print(f"reusing {workdir} (trained to step {args.steps})", flush=True)
        return {"command": "(reused)", "wall_s": None, "workdir": workdir}
    done = last_checkpoint(workdir)
    if args.resume and done and done < args.steps:
        # The same command resumes exactly (data position, step randomness; the learning-rate
        # schedule does not depend on the run's length), so this is the run to --steps.
        print(f"resuming {workdir} from step {done} to {args.steps}", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "jax_codec.train",
        f"--config={args.config}",
        f"--workdir={workdir}",
        f"--config.data.source=folder:{args.train_dir}",
        f"--config.data.eval_source=folder:{args.heldout_dir}",
        f"--config.train.num_steps={args.steps}",
        f"--config.train.eval_every={args.steps}",
        f"--config.train.checkpoint_every={args.steps}",
        f"--config.name={name}",
        f"--config.train.seed={args.seed}",
        *MODELS[name],
    ]
    where = f" (CPUs {sorted(cpus)})" if cpus else ""
    print("running" + where + ":", " ".join(cmd), flush=True)
    t0 = time.time()
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=pin)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return {
        "command": " ".join(cmd),
        "wall_s": time.time() - t0,
        "workdir": workdir,
        "cpus": sorted(cpus) if cpus else None,
    }


HIGHER_IS_BETTER = ("si_sdr", "visqol")


def _t95(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else float("nan")


def _diff_stats(diffs, metric: str, a: str) -> dict:
    """Per-file differences `a - b` of one metric: how many files, their mean, the 95%
    interval of the mean (None for one file) and on how many files `a` is better."""
    import numpy as np

    d = np.asarray(diffs, dtype=float)
    half = _t95(len(d)) * float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else None
    better = 1.0 if metric in HIGHER_IS_BETTER else -1.0
    return {
        "files": len(d),
        "mean_diff": float(d.mean()),
        "ci95": half,
        f"{a}_better_on": int(np.sum(better * d > 0)),
    }


def paired(rows: list[dict], a: str, b: str, metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """`a` against `b` at similar bitrates, file by file: each setting of `a` is paired with
    the setting of `b` whose mean actual kbps is closest; per metric, the mean over files of
    (a - b) (a file's value is the mean over its excerpts) with the 95% interval of that mean.
    Paired differences cancel what the files share (how hard each one is), so they resolve
    far smaller differences than two separate intervals do."""
    import numpy as np

    def per_setting(codec):
        out = {}
        for r in rows:
            if r["codec"] == codec and not r.get("error"):
                out.setdefault(r["n_quantizers"], []).append(r)
        return out

    sa, sb = per_setting(a), per_setting(b)

    def kbps(members):
        return float(np.mean([r["actual_kbps"] for r in members]))

    result = []
    for ka, ra in sorted(sa.items()):
        kb, rb = min(sb.items(), key=lambda kv: abs(kbps(kv[1]) - kbps(ra)))
        entry = {
            a: {"n_quantizers": ka, "kbps": kbps(ra)},
            b: {"n_quantizers": kb, "kbps": kbps(rb)},
            "metrics": {},
        }
        for m in metrics:
            fa, fb = {}, {}
            for dst, members in ((fa, ra), (fb, rb)):
                for r in members:
                    v = r.get(m)
                    if v is not None and np.isfinite(v):
                        dst.setdefault(r["file"], []).append(v)
            files = sorted(set(fa) & set(fb))
            d = [np.mean(fa[f]) - np.mean(fb[f]) for f in files]
            if d:
                entry["metrics"][m] = _diff_stats(d, m, a)
        result.append(entry)
    return result


def paired_at_equal_rate(
    rows: list[dict], a: str, b: str, metrics: tuple[str, ...] = METRICS
) -> list[dict]:
    """`a` against `b` at exactly `a`'s bitrate, file by file: `b`'s value on each file is
    read off its rate-distortion curve on that file (its settings' mean kbps and metric value,
    excerpts averaged first), interpolated linearly in log kbps at `a`'s kbps on the file.
    `paired` matches the nearest setting, which can give `b` a quarter more bits than `a` or
    fewer; this removes that. A file where `a`'s rate lies outside `b`'s range is left out
    (no extrapolation), counted in `out_of_range`. Same entries as `paired`, with `b`'s
    n_quantizers "interp" and its kbps `a`'s."""
    import numpy as np

    values: dict[str, dict[str, dict[int, list]]] = {a: {}, b: {}}
    for r in rows:
        if r["codec"] in values and not r.get("error"):
            per_file = values[r["codec"]].setdefault(r["file"], {})
            per_file.setdefault(r["n_quantizers"], []).append(r)

    def mean_of(members, m):
        v = [r[m] for r in members if r.get(m) is not None and np.isfinite(r[m])]
        return float(np.mean(v)) if v else None

    result = []
    for k in sorted({k for f in values[a].values() for k in f}):
        diffs: dict[str, list[float]] = {m: [] for m in metrics}
        rates, out_of_range = [], 0
        for file, per_file in sorted(values[a].items()):
            if k not in per_file or file not in values[b]:
                continue
            rate = mean_of(per_file[k], "actual_kbps")
            curve = sorted(
                (mean_of(members, "actual_kbps"), members) for members in values[b][file].values()
            )
            if not curve[0][0] <= rate <= curve[-1][0]:
                out_of_range += 1
                continue
            rates.append(rate)
            i = next(i for i, (r, _) in enumerate(curve) if r >= rate)
            for m in metrics:
                va = mean_of(per_file[k], m)
                hi = mean_of(curve[i][1], m)
                if va is None or hi is None:
                    continue
                if curve[i][0] == rate or i == 0:
                    vb = hi
                else:
                    (r0, lo_members), r1 = curve[i - 1], curve[i][0]
                    lo = mean_of(lo_members, m)
                    if lo is None:
                        continue
                    t = (np.log(rate) - np.log(r0)) / (np.log(r1) - np.log(r0))
                    vb = lo + t * (hi - lo)
                diffs[m].append(va - vb)
        entry = {
            a: {"n_quantizers": k, "kbps": float(np.mean(rates)) if rates else float("nan")},
            b: {"n_quantizers": "interp", "kbps": float(np.mean(rates)) if rates else float("nan")},
            "out_of_range": out_of_range,
            "metrics": {},
        }
        entry["metrics"] = {m: _diff_stats(d, m, a) for m, d in diffs.items() if d}
        if entry["metrics"] or out_of_range:
            result.append(entry)
    return result


def pooled_rows(specs: list[str], a: str = "joint", b: str = "dual") -> list[dict]:
    """The rows of several evaluations (e.g. one per training seed) as one: each spec is
    `RESULTS_JSON=JOINT_LABEL,OTHER_LABEL` (an evaluation's results.json and the two codecs'
    row labels in it); the codecs are renamed `a` and `b`, and each file is tagged with its
    evaluation, so `paired` takes every (track, evaluation) as a unit of its own."""
    rows = []
    for i, spec in enumerate(specs):
        path, _, labels = spec.rpartition("=")
        if not path or labels.count(",") != 1:
            raise SystemExit(f"--pool: {spec!r} is not RESULTS_JSON=JOINT_LABEL,OTHER_LABEL")
        mapping = dict(zip(labels.split(","), (a, b)))
        with open(path) as f:
            found = [r for r in json.load(f) if r["codec"] in mapping]
        missing = set(mapping) - {r["codec"] for r in found}
        if missing:
            raise SystemExit(f"--pool: {path} has no rows of {sorted(missing)}")
        rows += [dict(r, codec=mapping[r["codec"]], file=f"{r['file']}#{i}") for r in found]
    return rows


def bits_at_equal_quality(rows: list[dict], a: str, b: str, metric: str) -> list[dict]:
    """How many bits `b` needs to match `a`, file by file: for each setting of `a` and each
    file, `b`'s rate at which its rate-distortion curve on that file (its settings' mean kbps
    and metric value, excerpts averaged first) first reaches `a`'s value, interpolated linearly
    in log kbps between the two settings around the crossing; the ratio of that rate to `a`'s.
    A file where `b` never reaches `a`'s value counts as its top rate (the ratio is then a lower
    bound, `censored_above`); one where `b`'s lowest setting already does counts as its lowest
    rate (`censored_below`, an upper bound). Per setting of `a`: the median ratio over files,
    on how many files `b` is known to need more bits than `a` (an upper bound above 1 does not
    count: `b` may not go as low as `a`), and the one-sided sign-test p of that count (no
    difference: half the files either way)."""
    import numpy as np
    from scipy import stats

    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0  # sign * value: higher is better
    curves: dict[str, dict[str, dict[int, list]]] = {a: {}, b: {}}
    for r in rows:
        v = r.get(metric)
        if r["codec"] not in curves or r.get("error") or v is None or not np.isfinite(v):
            continue
        per_file = curves[r["codec"]].setdefault(r["file"], {})
        per_file.setdefault(r["n_quantizers"], []).append((r["actual_kbps"], sign * v))

    def points(per_file):
        return sorted(tuple(np.mean(np.array(m), axis=0)) for m in per_file.values())

    result = []
    settings = sorted({k for f in curves[a].values() for k in f})
    for k in settings:
        ratios, above, below, more = [], 0, 0, 0
        for file, per_file in sorted(curves[a].items()):
            if k not in per_file or file not in curves[b]:
                continue
            kbps_a, target = np.mean(np.array(per_file[k]), axis=0)
            curve = points(curves[b][file])
            hit = next((i for i, (_, v) in enumerate(curve) if v >= target), None)
            if hit is None:
                rate, above = curve[-1][0], above + 1
            elif hit == 0:
                rate, below = curve[0][0], below + 1
            else:
                (r0, v0), (r1, v1) = curve[hit - 1], curve[hit]
                t = (target - v0) / (v1 - v0)
                rate = float(np.exp(np.log(r0) + t * (np.log(r1) - np.log(r0))))
            ratios.append(rate / kbps_a)
            # An upper bound above 1 (b's lowest setting already matches a) decides nothing.
            more += int(rate > kbps_a and (hit is None or hit > 0))
        if not ratios:
            continue
        result.append(
            {
                "n_quantizers": k,
                "kbps": float(
                    np.mean([np.mean([p[0] for p in f[k]]) for f in curves[a].values() if k in f])
                ),
                "files": len(ratios),
                "median_ratio": float(np.median(ratios)),
                "ratios": [float(x) for x in ratios],
                f"{b}_needs_more_on": more,
                "sign_test_p": float(
                    stats.binomtest(more, len(ratios), 0.5, alternative="greater").pvalue
                ),
                "censored_above": above,
                "censored_below": below,
            }
        )
    return result


def equal_quality_table(entries: dict[str, list[dict]], a: str, b: str) -> str:
    """`bits_at_equal_quality` of several metrics as one markdown table."""
    head = f"| metric | {a} n_q | {a} kbps | {b} kbps / {a} kbps (median) | {b} needs more | p |"
    lines = [head, "|---|---|---|---|---|---|"]
    for metric, rows in entries.items():
        for e in rows:
            bound = "".join(
                f" ({sym} on {e[key]})"
                for sym, key in ((">=", "censored_above"), ("<=", "censored_below"))
                if e[key]
            )
            lines.append(
                f"| {metric} | {e['n_quantizers']} | {e['kbps']:.2f} | {e['median_ratio']:.2f}"
                f"{bound} | {e[b + '_needs_more_on']}/{e['files']} | {e['sign_test_p']:.3f} |"
            )
    return "\n".join(lines)


def paired_table(pairs: list[dict], a: str, b: str, metrics: tuple[str, ...] = METRICS) -> str:
    head = f"| {a} n_q | kbps | {b} n_q | kbps | " + " | ".join(metrics) + " |\n"
    head += "|---|---|---|---|" + "---|" * len(metrics) + "\n"
    lines = []
    for p in pairs:
        cells = []
        for m in metrics:
            e = p["metrics"].get(m)
            if e is None:
                cells.append("")
                continue
            ci = "" if e["ci95"] is None else f" ± {e['ci95']:.3f}"
            cells.append(f"{e['mean_diff']:+.3f}{ci} ({e[a + '_better_on']}/{e['files']})")
        lines.append(
            f"| {p[a]['n_quantizers']} | {p[a]['kbps']:.2f} | {p[b]['n_quantizers']} | "
            f"{p[b]['kbps']:.2f} | " + " | ".join(cells) + " |"
        )
    return head + "\n".join(lines)


def equal_rate_table(pairs: list[dict], a: str, b: str) -> str:
    """`paired_at_equal_rate` as a markdown table, with the files left out (outside `b`'s
    range of rates) per row."""
    table = paired_table(pairs, a, b).split("\n")
    table[0] += " files outside " + b + "'s rates |"
    table[1] += "---|"
    return "\n".join(
        [*table[:2], *(line + f" {p['out_of_range']} |" for line, p in zip(table[2:], pairs))]
    )


def run_label(workdir: str, name: str, step: int | None = None) -> str:
    """The rows' codec label of a run: the name in the config of its checkpoint `step` (the
    one evaluated), else in its config.json, else `name`. A reused or resumed run may have
    another name than `name`, and a resumed one another in each."""
    paths = [os.path.join(workdir, "config.json")]
    if step is not None:
        paths.insert(0, os.path.join(workdir, "checkpoints", str(step), "config", "metadata"))
    for path in paths:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        label = (d.get("config", d) if path.endswith("metadata") else d).get("name")
        if label:
            return label
    return name


def table(summary: list[dict]) -> str:
    head = "| codec | n_q | kbps | " + " | ".join(METRICS) + " |\n"
    head += "|---|---|---|" + "---|" * len(METRICS) + "\n"
    rows = []
    for r in sorted(summary, key=lambda r: (r["kbps"], r["codec"])):
        cells = []
        for m in METRICS:
            v = r["metrics"].get(m, {}).get("mean")
            cells.append("" if v is None else f"{v:.3f}")
        rows.append(
            f"| {r['codec']} | {r['n_quantizers']} | {r['kbps']:.2f} | " + " | ".join(cells)
        )
    return head + "\n".join(r + " |" for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train_dir", help="real stereo music to train on (not with --pool)")
    p.add_argument("--heldout_dir", help="held-out tracks to evaluate on (not with --pool)")
    p.add_argument("--config", default="configs/music48.py:runlocal")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--n_quantizers", default="1,2,3,4")
    p.add_argument("--baselines", default="opus,mp3")
    p.add_argument("--segment_seconds", type=float, default=10.0)
    p.add_argument("--excerpts", type=int, default=1, help="excerpts per held-out file")
    p.add_argument("--seed", type=int, default=0, help="train.seed of every run")
    p.add_argument(
        "--joint",
        default="preset",
        help="the model the others are compared with (evaluated "
        "as `--checkpoint`; paired differences are it minus each other model)",
    )
    p.add_argument("--workdir", default="/tmp/jax_codec_joint_vs_dual")
    p.add_argument("--output", default="")
    p.add_argument(
        "--models", default="preset,dual_mono_preset", help="which of " + ",".join(MODELS)
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many models at once, each pinned to its own share of the CPUs "
        "(default 1: one after the other, each on every CPU)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep a model's run in --workdir that has reached --steps instead of retraining it",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a model's run in --workdir that stopped short of --steps (exact "
        "resume) instead of retraining it from scratch",
    )
    p.add_argument(
        "--pool",
        default="",
        help="instead of training: pool evaluations already made, as space-separated "
        "RESULTS_JSON=JOINT_LABEL,OTHER_LABEL (e.g. one per seed), and pair them track by "
        "track and evaluation by evaluation",
    )
    p.add_argument(
        "--equal_quality",
        default="mel_distance_side,ild_difference,mel_distance",
        help="metrics for which to report how many bits the other model needs to match "
        "--joint's value on each file (`bits_at_equal_quality`); empty: none",
    )
    args = p.parse_args()
    eq_metrics = [m for m in args.equal_quality.split(",") if m]
    if args.pool:
        specs = args.pool.split()
        rows = pooled_rows(specs)
        pairs = paired(rows, "joint", "dual")
        print(paired_table(pairs, "joint", "dual"))
        at_rate = paired_at_equal_rate(rows, "joint", "dual")
        print("\nat joint's own bitrate (dual's curve interpolated on each file):")
        print(equal_rate_table(at_rate, "joint", "dual"))
        equal = {m: bits_at_equal_quality(rows, "joint", "dual", m) for m in eq_metrics}
        if equal:
            print("\nbits the other model needs for joint's quality, file by file:")
            print(equal_quality_table(equal, "joint", "dual"))
        if args.output:
            with open(args.output, "w") as f:
                json.dump(
                    {
                        "command": " ".join(sys.argv),
                        "pool": specs,
                        "paired": pairs,
                        "paired_equal_rate": at_rate,
                        "equal_quality": equal,
                    },
                    f,
                    indent=1,
                )
            print("wrote", args.output)
        return
    if not (args.train_dir and args.heldout_dir):
        p.error("--train_dir and --heldout_dir are required (unless --pool)")
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown or args.joint not in names or len(names) < 2:
        p.error(
            f"--models: --joint ({args.joint}) and at least one of {sorted(MODELS)} "
            f"(got {args.models!r})"
        )
    runs = train_all(names, args)
    out_dir = os.path.join(args.workdir, "eval")
    # Every model at the same budget: its last step, not its best export.
    final = {n: os.path.join(runs[n]["workdir"], "checkpoints", str(args.steps)) for n in names}
    cmd = [
        sys.executable,
        "-m",
        "jax_codec",
        "evaluate",
        "--checkpoint",
        final[args.joint],
        "--compare",
        ",".join(final[name] for name in names if name != args.joint),
        "--data",
        args.heldout_dir,
        "--n_quantizers",
        args.n_quantizers,
        "--baselines",
        args.baselines,
        "--segment_seconds",
        str(args.segment_seconds),
        "--excerpts",
        str(args.excerpts),
        "--output",
        out_dir,
    ]
    print("running:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"evaluate failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(out_dir, "results.json")) as f:
        rows = json.load(f)
    labels = {name: run_label(runs[name]["workdir"], name, args.steps) for name in names}
    pairs = {
        labels[name]: paired(rows, labels[args.joint], labels[name])
        for name in names
        if name != args.joint
    }
    at_rate = {
        labels[name]: paired_at_equal_rate(rows, labels[args.joint], labels[name])
        for name in names
        if name != args.joint
    }
    equal = {
        labels[name]: {
            m: bits_at_equal_quality(rows, labels[args.joint], labels[name], m) for m in eq_metrics
        }
        for name in names
        if name != args.joint
    }
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"joint_vs_dual_mono_{datetime.date.today().isoformat()}.json",
    )
    with open(out, "w") as f:
        json.dump(
            {
                "command": " ".join(sys.argv),
                "runs": runs,
                "evaluate": " ".join(cmd),
                **summary,
                "paired": pairs,
                "paired_equal_rate": at_rate,
                "equal_quality": equal,
            },
            f,
            indent=1,
        )
    print(table(summary["summary"]))
    a = labels[args.joint]
    for name, pp in pairs.items():
        print(f"\n{a} minus {name}, file by file (95% CI; files where {a} is better / files):")
        print(paired_table(pp, a, name))
        print(f"\n{a} minus {name} at {a}'s own bitrate ({name}'s curve interpolated per file):")
        print(equal_rate_table(at_rate[name], a, name))
        if equal[name]:
            print(f"\nbits {name} needs for {a}'s quality, file by file:")
            print(equal_quality_table(equal[name], a, name))
    print("wrote", out)


if __name__ == "__main__":
    main()
