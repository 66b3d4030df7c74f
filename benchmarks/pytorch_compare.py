r"""Side by side with the PyTorch originals: the imported presets against DAC, EnCodec and SNAC.

  python benchmarks/pytorch_compare.py                       # all models, both tasks
  python benchmarks/pytorch_compare.py --models=dac_44khz --tasks=infer --seconds=10 --json

For each model, the PyPI reference (descript-audio-codec, encodec, snac; random weights, no
download) and our preset with the *same* weights (converted by `jax_codec.convert`) run back to
back, each in its own child process pinned to the same `--threads` cores (torch.set_num_threads;
XLA's CPU thread pool is bounded by the affinity), on the same audio:

- infer: encode + decode of `--seconds` of audio, batch 1, all codebooks; median of `--repeats`
  runs after a warm-up run (ours: jitted encode and decode, compiled in the warm-up).
- train: one forward + backward of the generator on a batch of `--train_batch` x
  `--train_seconds` crops: DAC's 7-scale mel L1 (weight 15, power 1, as DAC's recipe) plus the
  quantizer losses each implementation returns (DAC: commitment 0.25 + codebook 1; EnCodec:
  its commitment penalty; SNAC: none returned, mel only; ours: commitment 0.25 + codebook 1
  for all). Median of `--repeats` steps after 2 warm-up steps.

Reported per side: median / min seconds, real-time factor (audio seconds per second), peak RSS
of the child (ru_maxrss: imports and, for JAX, compilation included) and the RSS growth over
the model-built baseline; ratios are PyTorch time / ours (above 1: we are faster). The first
codes of both sides are compared as a sanity check (`codes_equal`).

torchaudio: dac and encodec import it but these paths use none of it; where its PyPI wheel
cannot load beside CPU torch, an empty stand-in module is registered (as the tests do).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = {
    "dac_44khz": ("dac", "configs/dac_44khz.py"),
    "dac_24khz": ("dac", "configs/dac_24khz.py"),
    "dac_16khz": ("dac", "configs/dac_16khz.py"),
    "encodec_24khz": ("encodec", "configs/encodec_24khz.py"),
    "snac_24khz": ("snac", "configs/snac_24khz.py"),
    "snac_32khz": ("snac", "configs/snac_32khz.py"),
    "snac_44khz": ("snac", "configs/snac_44khz.py"),
}
MEL = dict(
    window_lengths=(32, 64, 128, 256, 512, 1024, 2048),
    n_mels=(5, 10, 20, 40, 80, 160, 320),
    clamp_eps=1e-5,
    mag_weight=0.0,
    log_weight=1.0,
    power=1.0,
)
MEL_WEIGHT, COMMIT_WEIGHT, CODEBOOK_WEIGHT = 15.0, 0.25, 1.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def music(seconds: float, sr: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """`[batch, T]` float32 of the built-in synthetic music."""
    from jax_codec.data.synthetic import SyntheticMusic

    gen = SyntheticMusic(sample_rate=sr, segment_seconds=seconds, seed=seed)
    return np.stack([np.asarray(gen[i], np.float32).reshape(-1) for i in range(batch)])


def _torchaudio_stand_in() -> None:
    try:
        import torchaudio  # noqa: F401
    except Exception:
        for key in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
            del sys.modules[key]
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "0.0+stub"
        sys.modules["torchaudio"] = stub


# --------------------------------------------------------------------------- the references


def build_reference(source: str, model_config):
    import torch

    _torchaudio_stand_in()
    torch.manual_seed(0)
    m = model_config
    if source == "dac":
        import dac

        from jax_codec.convert.core import dac_kwargs

        return dac.DAC(**dac_kwargs(m))
    if source == "encodec":
        import encodec

        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
        model.set_target_bandwidth(24.0)
        return model
    if source == "snac":
        import snac

        from jax_codec.convert.core import _snac_kwargs

        return snac.SNAC(**_snac_kwargs(m))
    raise ValueError(source)


def reference_codec(source: str, model):
    """(encode(x) -> (codes, state), decode(codes, state) -> audio) of a reference model."""
    if source == "dac":

        def enc(x):
            _, codes, *_ = model.encode(x)
            return codes[0, 0], codes

        def dec(codes):
            z, _, _ = model.quantizer.from_codes(codes)
            return model.decode(z)

    elif source == "encodec":

        def enc(x):
            frames = model.encode(x)
            return frames[0][0][0, 0], frames

        dec = model.decode
    else:

        def enc(x):
            codes = model.encode(x)
            return codes[0][0], codes

        dec = model.decode
    return enc, dec


def reference_losses(source: str, model, x, sr: int, mel_loss, signal_cls):
    """Generator forward of a reference model in training mode: (reconstruction, losses)."""
    if source == "dac":
        out = model(x, sr)
        y = out["audio"]
        q = COMMIT_WEIGHT * out["vq/commitment_loss"] + CODEBOOK_WEIGHT * out["vq/codebook_loss"]
    elif source == "encodec":
        emb = model.encoder(x)
        qres = model.quantizer(emb, model.frame_rate, model.bandwidth)
        y = model.decoder(qres.quantized)[..., : x.shape[-1]]
        q = qres.penalty if qres.penalty is not None else 0.0
    else:
        y, _ = model(x)
        y = y[..., : x.shape[-1]]
        q = 0.0
    # DAC-16k's odd stride makes its output a few samples shorter than its input.
    n = min(y.shape[-1], x.shape[-1])
    mel = mel_loss(signal_cls(y[..., :n], sr), signal_cls(x[..., :n], sr))
    return MEL_WEIGHT * mel + q


# --------------------------------------------------------------------------- child processes


def _pin(threads: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(cpus[:threads]))


def _timed(fn, repeats: int, warmup: int) -> tuple[list[float], object]:
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def child_torch(args, name: str, task: str) -> dict:
    import torch

    from jax_codec.config import load_config

    torch.set_num_threads(args.threads)
    source, spec = MODELS[name]
    config = load_config(spec)
    sr = config.model.sample_rate
    model = build_reference(source, config.model)
    base = current_rss_mib()
    r: dict = {"side": "pytorch", "torch": torch.__version__}
    if task == "infer":
        model.eval()
        enc, dec = reference_codec(source, model)
        x = torch.from_numpy(music(args.seconds, sr))[:, None]
        if source == "dac":
            x = model.preprocess(x, sr)

        def run():
            with torch.no_grad():
                first, codes = enc(x)
                y = dec(codes)
            return first, y

        times, (first, _) = _timed(run, args.repeats, 1)
        r["first_codes"] = first.numpy().astype(int).tolist()[:64]
        audio_s = args.seconds
    else:
        from audiotools import AudioSignal
        from dac.nn.loss import MelSpectrogramLoss

        mel_loss = MelSpectrogramLoss(
            n_mels=list(MEL["n_mels"]),
            window_lengths=list(MEL["window_lengths"]),
            clamp_eps=MEL["clamp_eps"],
            mag_weight=MEL["mag_weight"],
            log_weight=MEL["log_weight"],
            pow=MEL["power"],
            mel_fmin=[0.0] * 7,
            mel_fmax=[None] * 7,
        )
        model.train()
        x = torch.from_numpy(music(args.train_seconds, sr, args.train_batch, seed=1))[:, None]

        def run():
            model.zero_grad(set_to_none=True)
            loss = reference_losses(source, model, x, sr, mel_loss, AudioSignal)
            loss.backward()
            return float(loss)

        times, _ = _timed(run, args.repeats, 2)
        audio_s = args.train_batch * args.train_seconds
    r.update(_summary(times, audio_s, base))
    return r


def child_jax(args, name: str, task: str) -> dict:
    import jax
    import jax.numpy as jnp

    from jax_codec.config import load_config
    from jax_codec.convert import convert_state_dict
    from jax_codec.losses.spectral import multi_resolution_mel_loss
    from jax_codec.models.codec import build_codec

    source, spec = MODELS[name]
    config = load_config(spec)
    sr = config.model.sample_rate
    # The same weights as the reference: its random init, converted.
    params = convert_state_dict(source, build_reference(source, config.model).state_dict(), config)
    # On the device once, as PyTorch's are in its tensors: numpy arrays would be copied in on
    # every call (for EnCodec-24k's train step, a tenth of its time).
    params = jax.device_put(params)
    codec = build_codec(config.model, dtype="float32")
    base = current_rss_mib()
    r: dict = {"side": "jax", "jax": jax.__version__}
    if task == "infer":
        x = jnp.asarray(music(args.seconds, sr))[..., None]
        t0 = time.perf_counter()
        enc = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode)).lower(params, x)
        enc = enc.compile()
        codes = enc(params, x)
        dec = jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))
        dec = dec.lower(params, codes).compile()
        jax.block_until_ready(dec(params, codes))
        r["compile_s"] = time.perf_counter() - t0
        r["gflop"] = (_flops(enc) + _flops(dec)) / 1e9

        def run():
            codes = enc(params, x)
            y = dec(params, codes)
            return jax.block_until_ready((codes[0], y))

        times, (first, _) = _timed(run, args.repeats, 0)
        r["first_codes"] = np.asarray(first)[0].astype(int).tolist()[:64]
        audio_s = args.seconds
    else:
        x = jnp.asarray(music(args.train_seconds, sr, args.train_batch, seed=1))[..., None]

        def loss_fn(p, a, key):
            out = codec.apply(p, a, train=True, rngs={"dropout": key})
            mel = multi_resolution_mel_loss(out.audio[..., 0], a[..., 0], sr, **MEL)
            q = out.losses
            return (
                MEL_WEIGHT * mel + COMMIT_WEIGHT * q["commitment"] + CODEBOOK_WEIGHT * q["codebook"]
            )

        grad = jax.jit(jax.value_and_grad(loss_fn))
        key = jax.random.key(0)
        t0 = time.perf_counter()
        compiled = grad.lower(params, x, key).compile()
        r["compile_s"] = time.perf_counter() - t0
        r["gflop"] = _flops(compiled) / 1e9
        mem = compiled.memory_analysis()
        if mem is not None:
            r["xla_temp_mib"] = mem.temp_size_in_bytes / 2**20
            r["xla_argument_mib"] = mem.argument_size_in_bytes / 2**20

        def run():
            return jax.block_until_ready(compiled(params, x, key))

        times, _ = _timed(run, args.repeats, 2)
        audio_s = args.train_batch * args.train_seconds
    r.update(_summary(times, audio_s, base))
    r["gflops_per_s"] = r["gflop"] / r["median_s"]
    r["matmul_gflops_per_s"] = _matmul_peak()
    return r


def _flops(compiled) -> float:
    """XLA's FLOP count of a compiled function (cost analysis; 2 per multiply-add)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])


def _matmul_peak() -> float:
    """This machine's fp32 GFLOP/s on a square matmul right now, in the same child
    (`train_step.matmul_reference`): the rate that bounds any dense fp32 computation here."""
    import train_step

    return train_step.matmul_reference(5)["gflops_per_s_best"]


def _summary(times: list[float], audio_s: float, base_rss: float) -> dict:
    med = statistics.median(times)
    return {
        "times_s": times,
        "median_s": med,
        "min_s": min(times),
        "rtf": audio_s / med,
        "peak_rss_mib": peak_rss_mib(),
        "rss_growth_mib": max(0.0, peak_rss_mib() - base_rss),
    }


# --------------------------------------------------------------------------- the parent


def run_child(args, side: str, name: str, task: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        f"--_child={side}:{name}:{task}",
        f"--threads={args.threads}",
        f"--seconds={args.seconds}",
        f"--train_seconds={args.train_seconds}",
        f"--train_batch={args.train_batch}",
        f"--repeats={args.repeats}",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"side": side, "error": (p.stderr or p.stdout).strip().splitlines()[-5:]}
    return json.loads(lines[-1])


def compare(args) -> dict:
    results = []
    for name in args.models:
        if not os.path.exists(os.path.join(ROOT, MODELS[name][1])):
            results.append({"model": name, "error": f"{MODELS[name][1]} does not exist"})
            continue
        for task in args.tasks:
            row = {"model": name, "task": task}
            for side in ("pytorch", "jax"):  # back to back
                row[side] = run_child(args, side, name, task)
                print(f"  {name} {task} {side}: {_short(row[side])}", file=sys.stderr)
            pt, jx = row["pytorch"], row["jax"]
            if "median_s" in pt and "median_s" in jx:
                row["speedup"] = pt["median_s"] / jx["median_s"]
                row["memory_ratio"] = jx["peak_rss_mib"] / pt["peak_rss_mib"]
                # The speedup if ours ran at the matmul peak: what this CPU allows in fp32.
                row["ceiling"] = pt["median_s"] * jx["matmul_gflops_per_s"] / jx["gflop"]
            if "first_codes" in pt and "first_codes" in jx:
                row["codes_equal"] = pt["first_codes"] == jx["first_codes"]
            results.append(row)
    return {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}",
        "load_average": os.getloadavg(),
        "threads": args.threads,
        "results": results,
    }


def _short(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error']}"
    return (
        f"median {r['median_s']:.3f} s, {r['rtf']:.2f}x real time, peak {r['peak_rss_mib']:.0f} MiB"
    )


def markdown(report: dict, args) -> str:
    lines = [
        f"PyTorch originals vs ours, {args.threads} threads, fp32, random weights "
        f"(`{report['command']}`, load average {report['load_average'][0]:.1f} at the end):",
        "",
        "| model | task | PyTorch s | ours s | speedup | ceiling | ours GFLOP/s (of peak) "
        "| PyTorch peak RSS | ours peak RSS | codes equal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        if "speedup" not in row:
            err = row.get("error") or row.get("pytorch", {}).get("error") or row.get("jax", {})
            lines.append(f"| {row['model']} | {row.get('task', '')} | error: {err} | | | | | | | |")
            continue
        pt, jx = row["pytorch"], row["jax"]
        what = (
            f"encode+decode {args.seconds:g} s"
            if row["task"] == "infer"
            else f"fwd+bwd {args.train_batch} x {args.train_seconds:g} s"
        )
        lines.append(
            f"| {row['model']} | {what} | {pt['median_s']:.3f} | {jx['median_s']:.3f} | "
            f"**{row['speedup']:.2f}x** | {row['ceiling']:.2f}x | {jx['gflops_per_s']:.0f} "
            f"({jx['gflops_per_s'] / jx['matmul_gflops_per_s']:.0%}) | {pt['peak_rss_mib']:.0f} MiB | "
            f"{jx['peak_rss_mib']:.0f} MiB | {row.get('codes_equal', '')} |"
        )
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models", default=",".join(MODELS), type=lambda s: [m for m in s.split(",") if m]
    )
    p.add_argument("--tasks", default="infer,train", type=lambda s: [t for t in s.split(",") if t])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--train_seconds", type=float, default=1.0)
    p.add_argument("--train_batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for m in args.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    for t in args.tasks:
        if t not in ("infer", "train"):
            p.error(f"unknown task {t!r}; use infer,train")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args._child:
        side, name, task = args._child.split(":")
        _pin(args.threads)
        r = (child_torch if side == "pytorch" else child_jax)(args, name, task)
        print(json.dumps(r))
        return 0
    report = compare(args)
    print(json.dumps(report, indent=1) if args.json else markdown(report, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
