"""Does the default CPU config learn? Held-out mel distance against wall-clock time.

  python benchmarks/learning_curve.py --minutes=15 --workdir=/tmp/jax_codec_learning

Runs the real command (`python -m jax_codec.train --config=configs/base.py:runlocal`) in a
subprocess, stops it with SIGTERM (which saves a checkpoint) after `--minutes` of wall time
(compilation included), and prints the held-out mel distance at every evaluation with the
wall time at which it was logged, and its ratio to the step-0 value.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--workdir", default="/tmp/jax_codec_learning")
    p.add_argument("--config", default="configs/base.py:runlocal")
    p.add_argument("--eval_every", type=int, default=100)
    args, extra = p.parse_known_args()
    print("command:", " ".join([sys.executable, *sys.argv]))
    shutil.rmtree(args.workdir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "jax_codec.train",
        f"--config={args.config}",
        f"--workdir={args.workdir}",
        "--config.train.num_steps=1000000",
        f"--config.train.eval_every={args.eval_every}",
        *extra,
    ]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(args.workdir, "metrics.jsonl")
    seen, curve = 0, []
    while time.time() - t0 < args.minutes * 60 and proc.poll() is None:
        time.sleep(2)
        if not os.path.exists(metrics):
            continue
        with open(metrics) as f:
            lines = f.readlines()
        for line in lines[seen:]:
            rec = json.loads(line)
            keys = sorted(k for k in rec if k.startswith("eval/mel/"))
            if keys:
                full = max(keys, key=lambda k: int(k.split("/")[-1][:-1]))
                curve.append((time.time() - t0, rec["step"], rec[full], rec))
        seen = len(lines)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        print(err[-3000:])
    if not curve:
        sys.exit("no evaluation was logged")
    base = curve[0][2]
    print(f"{'wall_s':>7} {'step':>6} {'eval_mel':>9} {'ratio':>6}  si_sdr(full)")
    for wall, step, mel, rec in curve:
        sdr = [v for k, v in rec.items() if k.startswith("eval/si_sdr/")]
        print(
            f"{wall:7.0f} {step:6d} {mel:9.3f} {mel / base:6.3f}  {sdr[-1] if sdr else float('nan'):.2f}"
        )
    best = min(c[2] for c in curve)
    print(
        f"step-0 mel {base:.3f}; best {best:.3f} ({100 * (1 - best / base):.1f}% lower) "
        f"within {args.minutes:g} min; exit code {proc.returncode}"
    )


if __name__ == "__main__":
    main()
