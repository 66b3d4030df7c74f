"""Recipe ablations on real music: the same data, steps and seed per setting, held-out metrics.

  python benchmarks/ablate_recipe.py --train_dir=/tmp/music/train --heldout_dir=/tmp/music/heldout \
      --steps=500 --settings=fm_mean,default,complex_stft_15,gan_warmup

Each setting runs the real command (`python -m jax_codec.train --config=<config>` plus the
setting's overrides) from scratch for `--steps` steps, one after the other, with evaluation on
held-out tracks (`data.eval_source`) every `--eval_every` steps. The training loop logs what a
listener notices: DAC's mel distance and SI-SDR at 1 and at all codebooks, the loudness
difference and signed level error; this script collects them from each run's metrics.jsonl
into benchmarks/results/ablate_recipe_<date>.json and prints a markdown table (the last
evaluation of each setting, plus the wall time per step).

Real music: Debian's free soundtracks (`apt-get install hyperrogue-music asc-music`), whole
tracks held out; never committed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time

# name -> command-line overrides of the config (on top of the base config and data flags).
SETTINGS = {
    "default": [],
    "no_normalize": ["--config.data.normalize=False"],
    "fm_mean": ["--config.loss.fm_reduction=mean"],
    "complex_stft_1": ["--config.loss.complex_stft_weight=1.0"],
    "complex_stft_15": ["--config.loss.complex_stft_weight=15.0"],
    "complex_stft_15_lr_3e-4": [
        "--config.loss.complex_stft_weight=15.0",
        "--config.optim.learning_rate=3e-4",
        "--config.optim.disc_learning_rate=3e-4",
    ],
    "waveform_100": ["--config.loss.waveform_weight=100.0"],
    "si_sdr_1": ["--config.loss.si_sdr_weight=1.0"],
    "si_sdr_0.3": ["--config.loss.si_sdr_weight=0.3"],
    "si_sdr_1_lr_3e-4": [
        "--config.loss.si_sdr_weight=1.0",
        "--config.optim.learning_rate=3e-4",
        "--config.optim.disc_learning_rate=3e-4",
    ],
    "band_energy_15": ["--config.loss.band_energy_weight=15.0"],
    "band_energy_5": ["--config.loss.band_energy_weight=5.0"],
    "gan_warmup": ["--config.loss.gan_start_step=250"],
    "no_dropout": ["--config.model.quantizer_dropout=0.0"],
    "dropout_0.25": ["--config.model.quantizer_dropout=0.25"],
    # Model size: both conv stacks twice as wide (3.7x the parameters, 3.6x the codec FLOPs).
    "mid_size": ["--config.model.encoder_width=16", "--config.model.decoder_width=192"],
    "no_restart": ["--config.train.dead_code_threshold=0.0"],
    "balancer": ["--config.loss.balancer=True"],
    "lr_3e-4": ["--config.optim.learning_rate=3e-4", "--config.optim.disc_learning_rate=3e-4"],
    "recon_waveform_100": [
        "--config.loss.adv_weight=0.0",
        "--config.loss.fm_weight=0.0",
        "--config.loss.waveform_weight=100.0",
    ],
    "recon_complex_stft_15": [
        "--config.loss.adv_weight=0.0",
        "--config.loss.fm_weight=0.0",
        "--config.loss.complex_stft_weight=15.0",
    ],
    "mel_only": [
        "--config.loss.adv_weight=0.0",
        "--config.loss.fm_weight=0.0",
        "--config.loss.stft_weight=0.0",
        "--config.loss.onset_weight=0.0",
    ],
}


def run_setting(name: str, overrides: list[str], args) -> dict:
    workdir = os.path.join(args.workdir, name)
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
        f"--config.train.eval_every={args.eval_every}",
        f"--config.train.checkpoint_every={args.steps}",
        *overrides,
        *args.extra,
    ]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"name": name, "overrides": overrides, "error": proc.stderr[-500:]}
    evals, logs = [], []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if any(k.startswith("eval/") for k in rec):
                evals.append({k: v for k, v in rec.items() if k == "step" or k.startswith("eval/")})
            if "train/steps_per_s" in rec or "loss/mel" in rec:
                logs.append(rec)
    return {"name": name, "overrides": overrides, "wall_s": wall, "evals": evals}


def table(results: list[dict], k: int) -> str:
    head = (
        "| setting | step | mel 1q | mel all | all/1q | SI-SDR 1q | SI-SDR all | loudness diff "
        "(LU) | level error (dB) |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        if "error" in r:
            rows.append(f"| {r['name']} | failed | | | | | | | |")
            continue
        e = r["evals"][-1]
        rows.append(
            f"| {r['name']} | {e['step']} | {e['eval/mel/1q']:.3f} | {e[f'eval/mel/{k}q']:.3f} | "
            f"{e['eval/mel_ratio_all_to_1q']:.3f} | {e['eval/si_sdr/1q']:.2f} | "
            f"{e[f'eval/si_sdr/{k}q']:.2f} | {e[f'eval/loudness_diff/{k}q']:.2f} | "
            f"{e[f'eval/level_error_db/{k}q']:+.2f} |"
        )
    return head + "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train_dir", required=True)
    p.add_argument("--heldout_dir", required=True)
    p.add_argument("--config", default="configs/base.py:runlocal")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval_every", type=int, default=250)
    p.add_argument("--settings", default="fm_mean,default")
    p.add_argument("--workdir", default="/tmp/jax_codec_ablate")
    p.add_argument("--output", default="")
    args, args.extra = p.parse_known_args()
    names = [s for s in args.settings.split(",") if s]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown settings {unknown}; choose from {sorted(SETTINGS)}")
    results = []
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        "results",
        f"ablate_recipe_{datetime.date.today().isoformat()}.json",
    )
    for name in names:
        results.append(run_setting(name, SETTINGS[name], args))
        k = (
            max(
                int(key.split("/")[-1][:-1])
                for r in results
                if "evals" in r
                for key in r["evals"][-1]
                if key.startswith("eval/mel/")
            )
            if any("evals" in r for r in results)
            else 1
        )
        with open(out, "w") as f:
            json.dump(
                {
                    "command": " ".join(sys.argv),
                    "config": args.config,
                    "steps": args.steps,
                    "results": results,
                },
                f,
                indent=1,
            )
        print(table(results, k), flush=True)
    print("wrote", out)


if __name__ == "__main__":
    main()
