r"""SpectroStream streaming: ours against the reference's own streaming step, same weights.

  python benchmarks/spectrostream_streaming.py                 # full size, 4 s, 40 ms chunks
  python benchmarks/spectrostream_streaming.py --seconds=2 --rounds=3 --json \
      --output=benchmarks/results/spectrostream_2026-12-04.json

The reference is magenta-rt's `SpectroStream` (needs magenta-rt, see .ci/run) built from
configs/spectrostream_48khz.py with random fp32 weights (speed does not depend on them),
converted in memory for ours. Both stream the same stereo music one 40 ms frame (1920 samples)
per step, encode then decode, one stream:
- ours: `StreamingEncoder` / `StreamingDecoder` through `streaming.timed_stream`, as
  `python -m jax_codec stream` runs them;
- the reference: `get_waveform_to_codes_layer()` and `get_codes_to_waveform_layer()`, their
  `get_initial_state` and `step` (sequence-layers' streaming API), one jitted function per
  chunk doing both steps, state donated.
Each side is compiled and warmed up first, then timed per chunk (arrival to decoded audio,
waiting for the result); the rounds alternate ours / reference back to back in one process, so
that a busy shared host slows both alike. Reported: median and p99 chunk time, real-time factor
(audio seconds per wall second), their ratio, and how far the two streams' audio differ once
aligned (the reference emits a frame later than ours; the lag is measured, not assumed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def _music(seconds: float, sample_rate: int) -> np.ndarray:
    from jax_codec.data.synthetic import SyntheticMusic

    return SyntheticMusic(sample_rate, seconds, seed=0, channels=2)[0][None].astype(np.float32)


def _random_reference(module, seed: int = 0) -> dict:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import sequence_layers.jax as sl

    x = sl.Sequence(jnp.zeros((1, 3840, 2)), jnp.ones((1, 3840), bool))
    shapes = nn.unbox(jax.eval_shape(lambda: module.init(jax.random.key(0), x, training=False)))
    rng = np.random.default_rng(seed)

    def draw(path, s):
        fan = np.prod(s.shape[:-1]) if getattr(path[-1], "key", "") == "kernel" else 10.0
        return (rng.standard_normal(s.shape) / np.sqrt(fan)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


class ReferenceStream:
    """The reference's encoder and decoder steps, one jitted call per chunk."""

    def __init__(self, module, params, chunk: int, k: int):
        import jax
        import jax.numpy as jnp
        import sequence_layers.jax as sl

        def init(mod):
            enc, dec = mod.get_waveform_to_codes_layer(), mod.get_codes_to_waveform_layer()
            return (
                enc.get_initial_state(1, sl.ShapeDType((2,), jnp.float32), training=False),
                dec.get_initial_state(1, sl.ShapeDType((k,), jnp.int32), training=False),
            )

        def step(mod, x, state):
            enc, dec = mod.get_waveform_to_codes_layer(), mod.get_codes_to_waveform_layer()
            codes, es = enc.step(
                sl.Sequence(x, jnp.ones(x.shape[:2], bool)), state[0], training=False
            )
            y, ds = dec.step(codes, state[1], training=False)
            return y.values, (es, ds)

        self.params, self.chunk = params, chunk
        self.init = jax.jit(lambda p: module.apply(p, method=init))
        self.step = jax.jit(lambda p, x, s: module.apply(p, x, s, method=step), donate_argnums=2)

    def run(self, audio: np.ndarray) -> tuple[np.ndarray, list[float]]:
        import jax

        x0 = np.zeros((1, self.chunk, 2), np.float32)
        state = self.init(self.params)
        for _ in range(2):  # compile, and the variant taking a returned state
            _, state = self.step(self.params, x0, state)
        state = self.init(self.params)
        outs, times = [], []
        for i in range(audio.shape[1] // self.chunk):
            t0 = time.perf_counter()
            y, state = self.step(
                self.params, audio[:, i * self.chunk : (i + 1) * self.chunk], state
            )
            jax.block_until_ready(y)
            times.append(time.perf_counter() - t0)
            outs.append(np.asarray(y))
        return np.concatenate(outs, axis=1), times


def _ours(codec, params, audio):
    from jax_codec.inference import streaming as st

    enc = st.StreamingEncoder(codec, params, 1)
    dec = st.StreamingDecoder(codec, params, 1)
    chunks = list(st.stream_chunks(codec, audio, 1, enc.delay))
    outs, times = st.timed_stream(enc, dec, chunks)
    return np.concatenate(outs, axis=1), times, enc.delay + dec.delay


def _summary(times: list[float], chunk_s: float) -> dict:
    ms = [1000.0 * t for t in times]
    return {
        "chunks": len(ms),
        "chunk_ms_median": statistics.median(ms),
        "chunk_ms_p99": float(np.percentile(ms, 99)),
        "rtf": len(ms) * chunk_s / sum(times),
    }


def _aligned_difference(ours: np.ndarray, theirs: np.ndarray, hop: int) -> dict:
    """The whole-frame lag of `theirs` behind `ours` that matches best, and the difference."""
    best = None
    for lag in range(0, 6):
        n = min(ours.shape[1], theirs.shape[1] - lag * hop)
        d = float(np.abs(ours[:, :n] - theirs[:, lag * hop : lag * hop + n]).max())
        if best is None or d < best[1]:
            best = (lag, d)
    return {"reference_lag_frames": best[0], "max_abs_difference": best[1]}


def run(args) -> dict:
    import jax
    import magenta_rt.jax.spectrostream  # noqa: F401  (puts its sequence_layers on the path)

    from jax_codec.config import load_config
    from jax_codec.convert.spectrostream import convert_params, reference_config
    from jax_codec.models.codec import build_codec

    config = load_config(args.config)
    module = reference_config(config.model).make()
    ref_params = _random_reference(module)
    codec = build_codec(config.model, dtype="float32")
    params = convert_params(ref_params, config)
    hop, sr = codec.hop_length, codec.sample_rate
    audio = _music(args.seconds, sr)
    audio = audio[:, : audio.shape[1] // hop * hop]
    ref = ReferenceStream(module, ref_params, hop, codec.num_quantizers)
    rounds = []
    for _ in range(args.rounds):
        y_ours, t_ours, delay = _ours(codec, params, audio)
        y_ref, t_ref = ref.run(audio)
        rounds.append({"ours": _summary(t_ours, hop / sr), "reference": _summary(t_ref, hop / sr)})
    rtf_ours = statistics.median(r["ours"]["rtf"] for r in rounds)
    rtf_ref = statistics.median(r["reference"]["rtf"] for r in rounds)
    return {
        "config": args.config,
        "seconds": audio.shape[1] / sr,
        "chunk_ms": 1000.0 * hop / sr,
        "device": jax.devices()[0].device_kind,
        "host_shared": args.shared_host,
        "ours_stream_delay_frames": delay,
        "rounds": rounds,
        "rtf_ours_median": rtf_ours,
        "rtf_reference_median": rtf_ref,
        "speedup_ours_over_reference": rtf_ours / rtf_ref,
        **_aligned_difference(y_ours, y_ref, hop),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/spectrostream_48khz.py")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--shared_host", action="store_true", help="record that other jobs ran")
    p.add_argument("--json", action="store_true")
    p.add_argument("--output", help="also write the JSON here")
    args = p.parse_args()
    out = run(args)
    text = json.dumps(out, indent=1)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
    else:
        print(
            f"ours {out['rtf_ours_median']:.2f}x real time, reference "
            f"{out['rtf_reference_median']:.2f}x: ours {out['speedup_ours_over_reference']:.2f}x "
            f"faster; streams differ by {out['max_abs_difference']:.2e} at a lag of "
            f"{out['reference_lag_frames']} frames"
        )


if __name__ == "__main__":
    main()
