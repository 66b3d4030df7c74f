r"""bfloat16 compute against float32 on CPU: codes, audio and train-step losses, back to back.

  python benchmarks/bf16_cpu.py                                  # base codec, runlocal training
  python benchmarks/bf16_cpu.py --config=configs/base.py --seconds=5 \
      --train_config=configs/base.py:runlocal --steps=10 --json

Codes and audio (`--config`, random init from seed 0, `--seconds` of synthetic music): the
float32 codec's codes against those of the same weights computed in bfloat16 (`model.dtype`):
the fraction of identical codes per level; the SNR of the bfloat16 decoder's output against the
float32 decoder's for the same (float32) codes; and the SNR of the whole bfloat16 round trip
against the float32 one. The floor: float32 compute with every weight rounded to bfloat16, the
part of the code flips that bfloat16 weights cause by themselves.

Train steps (`--train_config`, `--steps` steps from one init, on one batch, one key): the
losses of float32, bfloat16, and float32 with the plain-XLA kernels (`JAX_CODEC_KERNELS=
reference`: the same function, other rounding), each step's relative deviation from float32.
The last is the run-to-run noise of float32 itself: GAN and VQ losses are chaotic, so a
deviation of bfloat16 within that noise is no precision problem.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.config import apply_overrides, load_config
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.inference.api import load_codec
from jax_codec.models.kernels import KERNELS_ENV
from jax_codec.training import sharding as sh
from jax_codec.training.state_init import create_train_state
from jax_codec.training.step import Trainer, compile_train_step

LOSSES = (
    "loss/mel",
    "loss/stft",
    "loss/adv_d",
    "loss/adv_g",
    "loss/fm",
    "vq/commitment",
    "loss/total_g",
    "norm/grad_g",
    "norm/grad_d",
)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10 of the reference's energy over the difference's."""
    reference, estimate = np.asarray(reference, np.float64), np.asarray(estimate, np.float64)
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def _agreement(codes_a, codes_b) -> list[float]:
    return [float(np.mean(np.asarray(a) == np.asarray(b))) for a, b in zip(codes_a, codes_b)]


def codes_and_audio(spec: str, seconds: float) -> dict:
    codec, params, config = load_codec(config=load_config(spec))
    sr = codec.sample_rate
    audio = SyntheticMusic(sr, seconds, seed=0, channels=codec.channels)[0]
    x = jnp.asarray(audio).reshape(1, -1, codec.channels)
    length = x.shape[1]

    def coder(dtype):
        c = codec.clone(dtype=dtype)
        enc = jax.jit(lambda p, a: c.apply(p, a, method=c.encode))
        dec = jax.jit(lambda p, cs: c.apply(p, cs, length, method=c.decode))
        return enc, dec

    enc32, dec32 = coder(jnp.float32)
    enc16, dec16 = coder(jnp.bfloat16)
    codes32 = enc32(params, x)
    y32 = np.asarray(dec32(params, codes32))
    codes16 = enc16(params, x)
    y16_same_codes = np.asarray(dec16(params, codes32))
    y16_round_trip = np.asarray(dec16(params, codes16))
    rounded = jax.tree.map(lambda w: w.astype(jnp.bfloat16).astype(jnp.float32), params)
    return {
        "config": spec,
        "seconds": seconds,
        "sample_rate": sr,
        "frames_per_level": [int(c.shape[1]) for c in codes32],
        "identical_codes_per_level": _agreement(codes32, codes16),
        "identical_codes_floor_bf16_weights": _agreement(codes32, enc32(rounded, x)),
        "decoder_snr_db_same_codes": snr_db(y32, y16_same_codes),
        "round_trip_snr_db": snr_db(y32, y16_round_trip),
        "output_rms_float32": float(np.sqrt(np.mean(y32**2))),
    }


def loss_tracking(spec: str, steps: int) -> dict:
    config = load_config(spec)
    mesh = sh.make_mesh(config.mesh, jax.devices()[:1])
    trainer = Trainer(config)
    state, shardings = create_train_state(trainer, mesh, jax.random.key(0))
    initial = jax.device_get(state)
    src = SyntheticMusic(trainer.codec.sample_rate, trainer.segment / trainer.codec.sample_rate)
    n = config.train.batch_size
    batch = jnp.asarray(np.stack([src[i][: trainer.segment] for i in range(n)]))
    runs, times = {}, {}
    for name, dtype, kernels in (
        ("float32", "float32", "auto"),
        ("bfloat16", "bfloat16", "auto"),
        ("float32_reference_kernels", "float32", "reference"),
    ):
        os.environ[KERNELS_ENV] = kernels  # read when the step is traced
        run_config = load_config(spec)
        apply_overrides(run_config, {"model.dtype": dtype})
        step = compile_train_step(Trainer(run_config), mesh, shardings)
        s, metrics, seconds = jax.device_put(initial, shardings), [], []
        for _ in range(steps):
            t0 = time.perf_counter()
            s, m = step(s, batch, jax.random.key(7))
            metrics.append(jax.device_get(m))
            seconds.append(time.perf_counter() - t0)
        assert int(s.nonfinite_steps) == 0, f"{name}: non-finite steps"
        runs[name] = [{k: float(m[k]) for k in LOSSES if k in m} for m in metrics]
        times[name] = statistics.median(seconds[1:]) if steps > 1 else seconds[0]
    os.environ.pop(KERNELS_ENV)
    base = runs["float32"]
    deviation = {
        name: {
            k: max(abs(r[k] - b[k]) / abs(b[k]) for r, b in zip(runs[name], base)) for k in base[0]
        }
        for name in ("bfloat16", "float32_reference_kernels")
    }
    return {
        "config": spec,
        "steps": steps,
        "batch": list(batch.shape),
        "losses": runs,
        "max_relative_deviation": deviation,
        "step_median_s": times,
    }


def table(r: dict) -> str:
    c, t = r["codes"], r["train"]
    pct = lambda v: f"{100 * v:.1f}%"
    lines = [
        f"codes and audio, {c['config']}, {c['seconds']:g} s, random init:",
        "",
        "| level | frames | identical codes bf16 | floor: fp32, bf16 weights |",
        "|---|---|---|---|",
    ]
    for i, (n, a, f) in enumerate(
        zip(
            c["frames_per_level"],
            c["identical_codes_per_level"],
            c["identical_codes_floor_bf16_weights"],
        )
    ):
        lines.append(f"| {i} | {n} | {pct(a)} | {pct(f)} |")
    lines += [
        "",
        f"decoder SNR, same codes: {c['decoder_snr_db_same_codes']:.1f} dB; round trip SNR: "
        f"{c['round_trip_snr_db']:.1f} dB (fp32 output RMS {c['output_rms_float32']:.2g})",
        "",
        f"train steps, {t['config']}, {t['steps']} steps, batch {t['batch']}: max relative "
        "deviation from fp32 over the steps (step 0 in brackets)",
        "",
        "| metric | bf16 | fp32, reference kernels |",
        "|---|---|---|",
    ]
    dev, runs = t["max_relative_deviation"], t["losses"]
    step0 = lambda name, k: abs(runs[name][0][k] / runs["float32"][0][k] - 1)
    for k in dev["bfloat16"]:
        lines.append(
            f"| {k} | {pct(dev['bfloat16'][k])} ({pct(step0('bfloat16', k))}) | "
            f"{pct(dev['float32_reference_kernels'][k])} "
            f"({pct(step0('float32_reference_kernels', k))}) |"
        )
    ms = t["step_median_s"]
    lines.append("")
    lines.append(
        "step median: " + ", ".join(f"{k} {v:.3f} s" for k, v in ms.items()) + " (shared host)"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="configs/base.py", help="codec for codes and audio")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--train_config", default="configs/base.py:runlocal")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = {
        "command": "python benchmarks/bf16_cpu.py " + shlex.join(argv or sys.argv[1:]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "jax": jax.__version__,
        "devices": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
        "cpu_count": os.cpu_count(),
        "codes": codes_and_audio(args.config, args.seconds),
        "train": loss_tracking(args.train_config, args.steps),
        "loadavg_1min_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(r, indent=1) if args.json else table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
