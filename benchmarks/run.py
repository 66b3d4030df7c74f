r"""The whole benchmark suite in one command: train step, inference, streaming, PyTorch side by side.

  python benchmarks/run.py            # full (about an hour on a 2-core CPU)
  python benchmarks/run.py --quick    # small sizes (about 15 minutes)
  python benchmarks/run.py --only=inference,pytorch --out=benchmarks/results

Runs each script of benchmarks/ as a child process, one after another (never two at once:
they would share the cores), collects their JSON and writes `OUT/latest.json` (everything,
with the commands, machine and load average) and `OUT/latest.md` (the tables the README
shows). A failing part is recorded with its error and the rest still runs; the exit code is 1
if any part failed.

Parts:
- train: `train_step.py` for base:runlocal, base and the DAC-44k preset (steps/s, audio s/s,
  compile time, peak RSS, effective FLOP/s against the fp32 matmul peak).
- inference: `inference.py`, offline encode/decode RTF, batch 1 and batched, for base and the
  presets (effective FLOP/s against the matmul peak).
- streaming: `streaming.py` for base (1 stream, 1 core, batched streams, p99 chunk time).
- pytorch: `pytorch_compare.py`, inference and one training forward+backward against PyPI's
  DAC, EnCodec and SNAC (same weights, threads and audio), as ratios.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PARTS = ("train", "inference", "streaming", "pytorch")


def jobs(quick: bool) -> list[tuple[str, str, list[str]]]:
    """(part, label, argv) of every child run."""
    py = [sys.executable]
    out = []
    train = [("configs/base.py:runlocal", ["--steps=10"] if not quick else ["--steps=3"])]
    if not quick:
        train += [
            ("configs/base.py", ["--steps=3", "--batch_size=2"]),
            ("configs/dac_44khz.py:runlocal", ["--steps=3", "--batch_size=1"]),
        ]
    for cfg, extra in train:
        out.append(
            ("train", cfg, py + [f"{HERE}/train_step.py", f"--config={cfg}", "--json", *extra])
        )
    inf_cfgs = ["configs/base.py", "configs/dac_44khz.py", "configs/encodec_24khz.py"]
    if os.path.exists(os.path.join(ROOT, "configs/snac_32khz.py")):
        inf_cfgs.append("configs/snac_32khz.py")
    for cfg in inf_cfgs if not quick else inf_cfgs[:2]:
        size = ["--seconds=2", "--batch=1", "--repeats=2"] if quick else ["--seconds=10"]
        out.append(
            ("inference", cfg, py + [f"{HERE}/inference.py", f"--config={cfg}", "--json", *size])
        )
    s = ["--seconds=5", "--batches=8", "--no_one_core"] if quick else ["--seconds=20"]
    out.append(("streaming", "configs/base.py", py + [f"{HERE}/streaming.py", "--json", *s]))
    p = ["--seconds=2", "--repeats=1", "--train_batch=1"] if quick else []
    out.append(("pytorch", "all", py + [f"{HERE}/pytorch_compare.py", "--json", *p]))
    return out


def run_job(argv: list[str]) -> dict:
    t0 = time.perf_counter()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - t0
    lines = [ln for ln in p.stdout.splitlines() if ln.lstrip().startswith("{")]
    text = p.stdout[p.stdout.find("{") :] if "{" in p.stdout else ""
    result = None
    for candidate in (text, lines[-1] if lines else ""):
        try:
            result = json.loads(candidate)
            break
        except json.JSONDecodeError:
            continue
    if p.returncode != 0 or result is None:
        tail = (p.stderr or p.stdout).strip().splitlines()[-8:]
        return {"error": tail, "returncode": p.returncode, "wall_s": wall}
    return {"result": result, "wall_s": wall}


def _f(x, fmt="{:.2f}"):
    return "" if x is None else fmt.format(x)


def markdown(report: dict) -> str:
    out = [
        f"Benchmarks of {report['date']} on {report['machine']} (`{report['command']}`; "
        f"load average before / after: {report['load_before'][0]:.1f} / "
        f"{report['load_after'][0]:.1f}).",
        "",
    ]
    runs = report["runs"]
    train = [r for r in runs if r["part"] == "train"]
    if train:
        out += [
            "**Train step** (generator + discriminators, fp32):",
            "",
            "| config | batch x s | compile s | step s | audio s/s | GFLOP/s | of matmul peak | peak RSS GiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in train:
            if "error" in r:
                out.append(
                    f"| {r['label']} | error: {r['error'][-1] if r['error'] else ''} |||||||"
                )
                continue
            x = r["result"]
            out.append(
                f"| {r['label']} | {x['batch_size']} x {x['audio_seconds_per_step'] / x['batch_size']:.3g} | "
                f"{x['compile_s']:.1f} | {x['step_median_s']:.3f} | {x['audio_s_per_s']:.2f} | "
                f"{_f(x['gflops_per_s'], '{:.0f}')} | {_f(x['fraction_of_matmul'])} | "
                f"{x['peak_rss_mib']['end'] / 1024:.2f} |"
            )
        out.append("")
    inf = [r for r in runs if r["part"] == "inference"]
    if inf:
        out += [
            "**Offline inference** (jitted encode / decode, all codebooks, fp32):",
            "",
            "| config | batch | encode RTF | decode RTF | enc+dec RTF | GFLOP/s | of matmul peak |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in inf:
            if "error" in r:
                out.append(f"| {r['label']} | error: {r['error'][-1] if r['error'] else ''} ||||||")
                continue
            for row in r["result"]["rows"]:
                out.append(
                    f"| {r['label']} | {row['batch']} | {row['encode_rtf']:.1f}x | "
                    f"{row['decode_rtf']:.1f}x | {row['encode_decode_rtf']:.2f}x | "
                    f"{row['effective_gflops']:.0f} | {100 * row['fraction_of_matmul_peak']:.0f}% |"
                )
        out.append("")
    for r in runs:
        if r["part"] == "streaming":
            out += ["**Streaming** (base, fp32):", ""]
            if "error" in r:
                out.append(f"error: {r['error']}")
            else:
                sys.path.insert(0, HERE)
                from streaming import table

                out.append(table(r["result"]))
            out.append("")
        if r["part"] == "pytorch":
            out += ["**Against the PyTorch originals** (same weights, threads and audio):", ""]
            if "error" in r:
                out.append(f"error: {r['error']}")
            else:
                out.append(_pytorch_table(r["result"]))
            out.append("")
    return "\n".join(out)


def _pytorch_table(rep: dict) -> str:
    lines = [
        "| model | task | PyTorch s | ours s | speedup | PyTorch peak RSS | ours peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rep["results"]:
        if "speedup" not in row:
            lines.append(f"| {row['model']} | {row.get('task', '')} | error ||||||")
            continue
        pt, jx = row["pytorch"], row["jax"]
        lines.append(
            f"| {row['model']} | {row['task']} | {pt['median_s']:.3f} | {jx['median_s']:.3f} | "
            f"**{row['speedup']:.2f}x** | {pt['peak_rss_mib']:.0f} MiB | {jx['peak_rss_mib']:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    p.add_argument("--out", default=os.path.join(HERE, "results"))
    args = p.parse_args(argv)
    only = [x for x in args.only.split(",") if x]
    for x in only:
        if x not in PARTS:
            p.error(f"unknown part {x!r}; choose from {', '.join(PARTS)}")
    report = {
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, {platform.system()}",
        "load_before": os.getloadavg(),
        "runs": [],
    }
    failed = False
    for part, label, argv_ in jobs(args.quick):
        if part not in only:
            continue
        print(f"[{part}] {label}: {' '.join(argv_[1:])}", file=sys.stderr, flush=True)
        r = {"part": part, "label": label, "argv": argv_[1:], **run_job(argv_)}
        failed |= "error" in r
        print(f"  {'FAILED' if 'error' in r else 'done'} in {r['wall_s']:.0f} s", file=sys.stderr)
        report["runs"].append(r)
    report["load_after"] = os.getloadavg()
    os.makedirs(args.out, exist_ok=True)
    md = markdown(report)
    for name, text in (("latest.json", json.dumps(report, indent=1)), ("latest.md", md)):
        tmp = os.path.join(args.out, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, os.path.join(args.out, name))
    print(md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
