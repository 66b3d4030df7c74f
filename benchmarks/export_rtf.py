r"""Exported encode + decode speed: onnxruntime and LiteRT against our jitted JAX, same weights.

  python benchmarks/export_rtf.py --config=configs/base.py --seconds=10 --repeats=5

One model (random weights, `--seed`), exported as `python -m jax_codec export` does (ONNX with
symbolic shapes; LiteRT at the signal's fixed shape), and our jitted `Codec.encode` /
`Codec.decode` of the same weights (weight norm folded, as inference does). The runtimes take
turns on the same `--seconds` of synthetic music (batch 1, all codebooks), `--repeats` rounds,
so a change in the shared host's load hits all of them; the median of each is reported as a
real-time factor (audio seconds per second) and as a ratio to JAX. Each runtime uses every core
(`--threads`, default all). The outputs are compared too: the fraction of codes equal to
JAX's and the largest audio difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_codec.config import load_config
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.export import export_file
from jax_codec.inference.api import LoadedCodec
from jax_codec.inference.streaming import inference_variables
from jax_codec.models.codec import build_codec


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def runtimes(loaded: LoadedCodec, blocks: int, threads: int, workdir: str) -> dict:
    """name -> (encode(x) -> list of codes, decode(codes) -> audio, seconds to export+load)."""
    codec, params = loaded.codec, loaded.params
    variables = inference_variables(params)
    enc = jax.jit(lambda v, a: codec.apply(v, a, method=codec.encode))
    dec = jax.jit(lambda v, c: codec.apply(v, c, method=codec.decode))
    out = {
        "jax": (
            lambda x: [np.asarray(c) for c in jax.block_until_ready(enc(variables, x))],
            lambda c: np.asarray(jax.block_until_ready(dec(variables, c))),
            0.0,
        )
    }
    import onnxruntime as ort

    t0 = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sessions = {}
    for part in ("encoder", "decoder"):
        path = os.path.join(workdir, f"{part}.onnx")
        export_file(loaded, part, path, fmt="onnx")
        sessions[part] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    out["onnxruntime"] = (
        lambda x: sessions["encoder"].run(None, {"audio": x}),
        lambda c: sessions["decoder"].run(None, {f"codes_{i}": a for i, a in enumerate(c)})[0],
        time.perf_counter() - t0,
    )
    from ai_edge_litert.interpreter import Interpreter

    t0 = time.perf_counter()
    runners = {}
    for part in ("encoder", "decoder"):
        path = os.path.join(workdir, f"{part}.tflite")
        export_file(loaded, part, path, fmt="tflite", blocks=blocks)
        runners[part] = Interpreter(model_path=path, num_threads=threads).get_signature_runner()
    k = codec.num_quantizers
    out["litert"] = (
        lambda x: [runners["encoder"](audio=x)[f"codes_{i}"] for i in range(k)],
        lambda c: runners["decoder"](**{f"codes_{i}": a for i, a in enumerate(c)})["audio"],
        time.perf_counter() - t0,
    )
    return out


def run(args) -> dict:
    config = load_config(args.config)
    codec = build_codec(config.model, dtype="float32")
    L, sr = codec.length_multiple, codec.sample_rate
    blocks = -(-int(args.seconds * sr) // L)
    params = jax.jit(codec.init)(jax.random.key(args.seed), jnp.zeros((1, L, codec.channels)))
    loaded = LoadedCodec(codec, params, config)
    signal = SyntheticMusic(sample_rate=sr, segment_seconds=blocks * L / sr, seed=3)[0]
    x = np.asarray(signal, np.float32).reshape(1, -1, 1)[:, : blocks * L]
    audio_s = x.shape[1] / sr
    with tempfile.TemporaryDirectory() as workdir:
        rts = runtimes(loaded, blocks, args.threads, workdir)
        sizes = {f: os.path.getsize(os.path.join(workdir, f)) for f in sorted(os.listdir(workdir))}
        times = {name: {"encode": [], "decode": []} for name in rts}
        outputs = {}
        for name, (encode, decode, _) in rts.items():  # warm up: compile, allocate
            codes = encode(x)
            outputs[name] = (codes, decode(codes))
        for _ in range(args.repeats):
            for name, (encode, decode, _) in rts.items():
                te, codes = _timed(lambda e=encode: e(x))
                td, _ = _timed(lambda d=decode, c=codes: d(c))
                times[name]["encode"].append(te)
                times[name]["decode"].append(td)
    ref_codes, ref_audio = outputs["jax"]
    rows = []
    for name in rts:
        te = statistics.median(times[name]["encode"])
        td = statistics.median(times[name]["decode"])
        codes, audio = outputs[name]
        equal = np.mean([np.mean(np.asarray(a) == b) for a, b in zip(codes, ref_codes)])
        rows.append(
            {
                "runtime": name,
                "encode_s": te,
                "decode_s": td,
                "encode_rtf": audio_s / te,
                "decode_rtf": audio_s / td,
                "encode_decode_rtf": audio_s / (te + td),
                "export_and_load_s": rts[name][2],
                "codes_equal_to_jax": float(equal),
                "max_audio_diff_to_jax": float(np.abs(np.asarray(audio) - ref_audio).max()),
            }
        )
    base = rows[0]["encode_decode_rtf"]
    for row in rows:
        row["vs_jax"] = row["encode_decode_rtf"] / base
    return {
        "command": "python benchmarks/export_rtf.py " + " ".join(sys.argv[1:]),
        "config": args.config,
        "audio_seconds": audio_s,
        "threads": args.threads,
        "repeats": args.repeats,
        "versions": _versions(),
        "artifact_bytes": sizes,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }


def _versions() -> dict:
    import importlib.metadata as md

    names = ("jax", "jax2onnx", "onnxruntime", "tensorflow-cpu", "ai-edge-litert")
    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = None
    return out


def table(r: dict) -> str:
    lines = [
        f"{r['config']}, {r['audio_seconds']:.2f} s of audio, batch 1, {r['threads']} threads, "
        f"median of {r['repeats']} (load average {r['load_average'][0]:.1f}):",
        "",
        "| runtime | encode RTF | decode RTF | enc+dec RTF | vs JAX | codes = JAX | max audio diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['runtime']} | {row['encode_rtf']:.1f}x | {row['decode_rtf']:.1f}x | "
            f"{row['encode_decode_rtf']:.2f}x | {row['vs_jax']:.2f} | "
            f"{100 * row['codes_equal_to_jax']:.1f}% | {row['max_audio_diff_to_jax']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/base.py")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    r = run(args)
    print(table(r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
