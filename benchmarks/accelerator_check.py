r"""The measurements of benchmarks/accelerator_check.sh, one stage per process.

  python benchmarks/accelerator_check.py train --case=base --out=DIR [--dry_run]
  python benchmarks/accelerator_check.py train --case=dac_44khz --out=DIR
  python benchmarks/accelerator_check.py torch_dac --out=DIR
  python benchmarks/accelerator_check.py streaming --out=DIR
  python benchmarks/accelerator_check.py report --out=DIR    # accelerator_check.json and .md

Each stage writes `DIR/stage_<name>.json` (an `error` entry if it failed), in its own process so
that one stage's device memory (XLA preallocates, torch caches) is free for the next. `report`
gathers the stages, the pytest results (`DIR/pytest.xml`) and the devices into
`accelerator_check.json` and a markdown table.

- train: `benchmarks/train_step.py`'s measurement of the base and DAC-44k train steps in
  bfloat16: step time, audio seconds per second, XLA's FLOPs per step and the MFU, those FLOPs
  over the step time against the device's peak (`PEAK_BF16_TFLOPS`; XLA's cost analysis counts
  the per-device program, so this is per device).
- torch_dac: PyTorch DAC's train step (`learning_vs_dac.DACTrainStep`: DAC's scripts/train.py,
  bfloat16 autocast) on the same device kind, the same shapes and the same batch as the
  DAC-44k case.
- streaming: `benchmarks/streaming.py`'s real-time factor of the base codec, 20 ms chunks.

`--dry_run` (the CPU test of this script): tiny models, 1 timed step, short audio; the peak is
then this CPU's measured float32 matmul rate, so every field is still a finite number.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import statistics
import sys
import time
import traceback
import types
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# Dense bfloat16 TFLOP/s per chip (vendor figures, no sparsity), matched in this order as
# substrings of `jax.Device.device_kind` (the first match wins: "H100 PCIe" before "H100").
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L4", 121.0),
    ("TPU v4", 275.0),
    ("TPU v5 lite", 197.0),
    ("TPU v5e", 197.0),
    ("TPU v5p", 459.0),
    ("TPU v5", 459.0),
    ("TPU v6 lite", 918.0),
    ("TPU v6e", 918.0),
)

# (config, overrides) of each train case: real sizes on an accelerator ...
CASES = {
    "base": ("configs/base.py", {"train.batch_size": "32"}),
    "dac_44khz": ("configs/dac_44khz.py", {"train.batch_size": "16"}),
}
# ... and tiny ones for the dry run (the same code, compiled in seconds on a CPU).
_TINY_DISC = {
    "discriminator.periods": "(2,)",
    "discriminator.mrd_window_lengths": "(512,)",
    "discriminator.channels": "4",
    "train.batch_size": "1",
}
DRY_CASES = {
    "base": (
        "configs/base.py:runlocal",
        {
            **_TINY_DISC,
            "model.encoder_strides": "(4, 8)",
            "model.decoder_strides": "(8, 4)",
            "model.dilations": "(1,)",
            "model.vq_strides": "(2, 1)",
            "discriminator.kinds": '("mpd", "mrd")',
            "loss.mel_window_lengths": "(64, 256)",
            "loss.mel_n_mels": "(10, 40)",
            "loss.onset_weight": "0.0",
            "train.segment_seconds": "0.05",
        },
    ),
    "dac_44khz": (
        "configs/dac_44khz.py:tiny",
        {
            **_TINY_DISC,
            "model.encoder_strides": "(4, 8)",
            "model.decoder_strides": "(8, 4)",
            "model.vq_strides": "(1, 1)",
            "loss.mel_window_lengths": "(64, 256)",
            "loss.mel_n_mels": "(10, 40)",
            # PyTorch DAC's mel loss has fixed windows up to 2048: crops must be longer.
            "train.segment_seconds": "0.05",
        },
    ),
}
STEPS, DRY_STEPS = 5, 1


def peak_tflops(device_kind: str) -> float | None:
    """The device's dense bfloat16 peak from `PEAK_BF16_TFLOPS`, or None if not listed."""
    for name, tflops in PEAK_BF16_TFLOPS:
        if name.lower() in device_kind.lower():
            return tflops
    return None


def case_config(case: str, dry_run: bool):
    """The config of a train case, in bfloat16."""
    from jax_codec.config import apply_overrides, load_config

    spec, overrides = (DRY_CASES if dry_run else CASES)[case]
    config = load_config(spec)
    apply_overrides(config, {**overrides, "model.dtype": "bfloat16"})
    return config


def stage_train(args) -> dict:
    import train_step

    config = case_config(args.case, args.dry_run)
    r = train_step.measure(config, DRY_STEPS if args.dry_run else STEPS, args.case)
    import jax

    kind = jax.devices()[0].device_kind
    peak = peak_tflops(kind)
    source = "table (dense bf16)"
    if peak is None:  # a CPU: its measured float32 matmul rate stands in for a peak
        peak, source = r["matmul_ref"]["gflops_per_s_best"] / 1e3, "measured fp32 matmul"
    flops = r["gflop_per_step"]
    r["peak_tflops"], r["peak_source"] = peak, source
    r["tflops_per_s"] = None if flops is None else flops / 1e3 / r["step_median_s"]
    r["mfu"] = None if flops is None else r["tflops_per_s"] / peak
    return r


def stage_torch_dac(args) -> dict:
    import learning_vs_dac as lvd
    import torch
    import train_step

    from jax_codec.convert.core import dac_kwargs
    from jax_codec.models.codec import build_codec
    from jax_codec.training.step import segment_samples

    lvd._torchaudio_stand_in()
    import dac

    config = case_config("dac_44khz", args.dry_run)
    m, d = config.model, config.discriminator
    segment = segment_samples(config, build_codec(m))
    batch_size = int(config.train.batch_size)
    x = train_step.synthetic_batch(m.sample_rate, segment, batch_size, int(config.train.seed))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    gen = dac.DAC(**dac_kwargs(m), quantizer_dropout=m.quantizer_dropout).to(device).train()
    disc = lvd.dac_discriminator(list(d.periods), list(d.mrd_window_lengths), int(d.channels))
    disc = disc.to(device).train()
    step = lvd.DACTrainStep(gen, disc, float(config.optim.learning_rate), torch.bfloat16)
    batch = torch.from_numpy(x)[:, None].to(device)

    def call():
        step(batch)
        if device == "cuda":
            torch.cuda.synchronize()

    warmup = 1 if args.dry_run else 3  # cuDNN autotuning, DAC's TorchScript Snake
    times = []
    for i in range(warmup + (DRY_STEPS if args.dry_run else STEPS)):
        t0 = time.perf_counter()
        call()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    audio_s = batch_size * segment / m.sample_rate
    return {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "autocast": "bfloat16",
        "batch_size": batch_size,
        "segment_samples": segment,
        "steps_timed": len(times),
        "step_median_s": med,
        "step_min_s": min(times),
        "audio_s_per_s": audio_s / med,
        "params_gen_m": sum(p.numel() for p in gen.parameters()) / 1e6,
        "params_disc_m": sum(p.numel() for p in disc.parameters()) / 1e6,
    }


def stage_streaming(args) -> dict:
    import jax.numpy as jnp
    import streaming

    from jax_codec.config import load_config
    from jax_codec.models.codec import resolve_dtype

    spec = "configs/base.py:runlocal" if args.dry_run else "configs/base.py"
    options = types.SimpleNamespace(
        config=spec,
        chunk_ms=20.0,
        seconds=0.5 if args.dry_run else 10.0,
        batch_seconds=0.5 if args.dry_run else 5.0,
        batches=[2] if args.dry_run else [64],
        offline=not args.dry_run,
        overrides={},
    )
    r = streaming.run(options)
    r["dtype"] = str(jnp.dtype(resolve_dtype(load_config(spec).model.dtype)))
    return r


def pytest_summary(path: str) -> dict:
    """Counts and failing test ids from a JUnit XML file (pytest --junitxml)."""
    if not os.path.exists(path):
        return {"error": f"no {os.path.basename(path)}: the tests did not run"}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    counts["skipped"] = sum(int(s.get("skipped", 0)) for s in suites)
    counts["seconds"] = sum(float(s.get("time", 0.0)) for s in suites)
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "failed": failed}


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def report(args) -> dict:
    out = args.out
    stages = {
        os.path.basename(p)[len("stage_") : -len(".json")]: _load(p)
        for p in sorted(glob.glob(os.path.join(out, "stage_*.json")))
    }
    devices = stages.pop("devices", {})
    r = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "devices": devices,
        "pytest": pytest_summary(os.path.join(out, "pytest.xml")),
        **stages,
    }
    jx, pt = stages.get("train_dac_44khz", {}), stages.get("torch_dac", {})
    if "step_median_s" in jx and "step_median_s" in pt:
        r["dac_44khz_speedup_vs_pytorch"] = pt["step_median_s"] / jx["step_median_s"]
    with open(os.path.join(out, "accelerator_check.json"), "w") as f:
        json.dump(r, f, indent=1)
    with open(os.path.join(out, "accelerator_check.md"), "w") as f:
        f.write(markdown(r) + "\n")
    return r


def markdown(r: dict) -> str:
    f = lambda v: "n/a" if v is None else f"{v:.3g}"
    dev, tests = r["devices"], r["pytest"]
    lines = [
        f"Accelerator check {r['date']}{' (dry run)' if r['dry_run'] else ''}: "
        f"{dev.get('count', '?')} x {dev.get('device_kind', '?')}, jax {dev.get('jax', '?')}",
        "",
        "tests: "
        + (
            tests["error"]
            if "error" in tests
            else f"{tests['passed']} passed, {tests['failures'] + tests['errors']} failed, "
            f"{tests['skipped']} skipped in {tests['seconds']:.0f} s"
            + ("".join(f"\n- FAILED {t}" for t in tests["failed"]))
        ),
        "",
        "| train step, bf16 | batch x samples | compile s | step ms | audio s/s | GFLOP/step "
        "| TFLOP/s | MFU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("train_base", "train_dac_44khz", "torch_dac"):
        s = r.get(name)
        if s is None:
            continue
        label = "PyTorch DAC-44k (autocast)" if name == "torch_dac" else name[len("train_") :]
        if "error" in s:
            lines.append(f"| {label} | error: {s['error'][-1]} | | | | | | |")
            continue
        lines.append(
            f"| {label} | {s['batch_size']} x {s['segment_samples']} | "
            f"{f(s.get('compile_s'))} | {f(1e3 * s['step_median_s'])} | "
            f"{f(s['audio_s_per_s'])} | {f(s.get('gflop_per_step'))} | "
            f"{f(s.get('tflops_per_s'))} | {f(s.get('mfu'))} |"
        )
    if "dac_44khz_speedup_vs_pytorch" in r:
        lines.append("")
        lines.append(f"DAC-44k step: {r['dac_44khz_speedup_vs_pytorch']:.2f}x PyTorch DAC")
    peak = r.get("train_base", {})
    if "peak_tflops" in peak:
        lines.append(f"MFU against {f(peak['peak_tflops'])} TFLOP/s ({peak['peak_source']})")
    s = r.get("streaming")
    if s is not None:
        lines.append("")
        if "error" in s:
            lines.append(f"streaming: error: {s['error'][-1]}")
        else:
            for c in s["cases"]:
                lines.append(
                    f"streaming {s['config']} ({s['dtype']}), {c['case']}: RTF {c['rtf']:.2f}x "
                    f"per stream, p99 {c['chunk_ms_p99']:.2f} ms of a {c['chunk_ms']:.1f} ms chunk"
                )
    return "\n".join(lines)


def stage_devices(args) -> dict:
    """The devices, and where a cold process's start-up time goes: the backend's first
    operation, and the compile of one small 1-D convolution with and without XLA's autotuning
    (on a GPU, cuDNN's algorithm search; the train stages print their own init and compile
    times)."""
    import jax
    import jax.numpy as jnp

    t0 = time.perf_counter()
    d = jax.devices()
    jnp.ones(()).block_until_ready()
    first_op_s = time.perf_counter() - t0

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
        )

    x = jnp.ones((8, 4096, 64), jnp.bfloat16)
    w = jnp.ones((7, 64, 64), jnp.bfloat16)
    compile_s = {}
    for name, options in (("default", {}), ("autotune_off", {"xla_gpu_autotune_level": 0})):
        t0 = time.perf_counter()
        jax.jit(conv, compiler_options=options).lower(x, w).compile()
        compile_s[name] = time.perf_counter() - t0
    return {
        "platform": d[0].platform,
        "device_kind": d[0].device_kind,
        "count": len(d),
        "jax": jax.__version__,
        "peak_bf16_tflops": peak_tflops(d[0].device_kind),
        "first_op_s": first_op_s,
        "conv_compile_s": compile_s,
    }


STAGES = {
    "devices": stage_devices,
    "train": stage_train,
    "torch_dac": stage_torch_dac,
    "streaming": stage_streaming,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stage", choices=[*STAGES, "report"])
    p.add_argument("--out", required=True, help="folder for the stage and report files")
    p.add_argument("--case", choices=list(CASES), help="the train stage's case")
    p.add_argument("--dry_run", action="store_true", help="tiny sizes, for a CPU")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.stage == "report":
        print(markdown(report(args)))
        return 0
    if args.stage == "train" and not args.case:
        p.error("the train stage needs --case")
    name = f"train_{args.case}" if args.stage == "train" else args.stage
    try:
        result, rc = STAGES[args.stage](args), 0
    except Exception:  # recorded in the report; the other stages still run
        result, rc = {"error": traceback.format_exc().strip().splitlines()[-3:]}, 1
    with open(os.path.join(args.out, f"stage_{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"{name}: " + ("error " + result["error"][-1] if rc else "done"), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
