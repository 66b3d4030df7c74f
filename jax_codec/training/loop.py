"""The training run: data, sharded state, compiled step, logs, evaluation, checkpoints, resume.

Resume order (same on every process): build the abstract state and its shardings -> restore
the latest complete checkpoint in `workdir/checkpoints` (train state, then the grain iterator
position) -> continue at its step. Step RNG is `fold_in(key, step)`, so nothing else is needed
for a resumed run to take exactly the steps an uninterrupted one would have.

Multi-host (one process per host, `jax_codec.training.distributed`): every process runs this
same function. Each loads only its rows of the global batch (`train.batch_size` is global),
all of them take part in every checkpoint save and restore (Orbax synchronises them), and only
process 0 writes logs, TensorBoard, `config.json` and the data report and shows the progress
bar; the others print a short per-host progress line to stderr. The work dir must be one
directory all hosts see: a shared filesystem, or a `gs://` path (checkpoints and `best/` are
written there through Orbax/etils.epath; TensorBoard and `metrics.jsonl` then go to a local
directory on process 0, printed at start).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from jax_codec.config import ConfigError
from jax_codec.data import pipeline
from jax_codec.models.codec import build_codec
from jax_codec.stereo import match_channels, to_mid_side
from jax_codec.training import checkpoints, distributed
from jax_codec.training import logging as tlog
from jax_codec.training import sharding as sh
from jax_codec.training.state_init import state_initializer
from jax_codec.training.step import Trainer, compile_train_step, segment_samples

EVAL_EXAMPLES = 8
EVAL_SECONDS = 1.0
HOST_LINE_SECONDS = 30.0  # non-zero processes print their progress line at most this often


def is_remote(path: str) -> bool:
    """A cloud path (gs://, s3://, ...) that os.* cannot write."""
    return "://" in str(path)


def _write_text(path: epath.Path, text: str) -> None:
    path.write_text(text)


def validate_run(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
    """Checks that need the devices; raise ConfigError before anything is compiled."""
    t = config.train
    for key in ("num_steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
        if int(t[key]) < (0 if key == "num_steps" else 1):
            raise ConfigError(f"train.{key}={t[key]} must be a positive integer")
    if t.batch_size % jax.process_count():
        raise ConfigError(
            f"train.batch_size={t.batch_size} is the global batch and must divide evenly over "
            f"the {jax.process_count()} processes (hosts)"
        )
    if t.batch_size % mesh.size:
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by the {mesh.size} devices; "
            f"use a multiple of {mesh.size} (e.g. --config.train.batch_size="
            f"{max(1, round(t.batch_size / mesh.size)) * mesh.size})"
        )


def listener_metrics(ref: np.ndarray, est: np.ndarray, sr: int, n: int) -> dict[str, float]:
    """Host-side held-out metrics of reconstructions `est` of `ref` (both `[B, T]`, or
    `[B, T, C]` for a stereo model) at `n` levels: the mean SI-SDR (dB,
    `evaluation.metrics.si_sdr`, as `evaluate` reports it: averaged over channels), the mean
    absolute loudness difference (LU, ITU-R BS.1770 via pyloudnorm, all channels together) and
    the mean signed level error (dB, positive = too loud), which a listener hears first. Silence
    counts as `metrics.SILENCE_LUFS`, so a silent reconstruction shows as a large error."""
    from jax_codec.evaluation import metrics

    # Channels first, as the metrics take them: [B, C, T].
    ref = ref[:, None] if ref.ndim == 2 else np.swapaxes(ref, 1, 2)
    est = est[:, None] if est.ndim == 2 else np.swapaxes(est, 1, 2)
    sdrs = [metrics.si_sdr(r, e) for r, e in zip(ref, est, strict=True)]
    sdrs = [v for v in sdrs if np.isfinite(v)]
    diffs, signed = [], []
    if ref.shape[-1] < int(0.4 * sr):  # BS.1770 needs one 400 ms block: not measured
        ref, est = ref[:0], est[:0]
    for r, e in zip(ref, est, strict=True):
        lr, le = metrics.loudness_floored(r, sr), metrics.loudness_floored(e, sr)
        diffs.append(abs(le - lr))
        signed.append(le - lr)
    nan = float("nan")
    return {
        f"eval/si_sdr/{n}q": float(np.mean(sdrs)) if sdrs else nan,
        f"eval/loudness_diff/{n}q": float(np.mean(diffs)) if diffs else nan,
        f"eval/level_error_db/{n}q": float(np.mean(signed)) if signed else nan,
    }


def level_dbfs(x: np.ndarray) -> float:
    """RMS level (dBFS) of `x` ``[B, T]`` or ``[B, T, C]``, each row's and channel's mean (DC)
    removed: what is heard."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    return float(20 * np.log10(np.sqrt(np.mean(np.square(x))) + 1e-12))


def mono_side_db(y: np.ndarray) -> float:
    """Side level `(L - R) / 2` over mid level `(L + R) / 2` (dB) of stereo `y` ``[B, T, 2]``;
    -240 for identical channels."""
    ms = to_mid_side(np.asarray(y, np.float64))
    side = level_dbfs(ms[..., 1])
    return -240.0 if side <= -239.0 else max(side - level_dbfs(ms[..., 0]), -240.0)


# How much quieter the eval batch is fed for `eval/quiet_gain_db` (a quiet passage).
QUIET_DB = 40.0


def eval_bitrates(num_quantizers: int) -> list[int]:
    """Quantizer counts evaluated: 1, powers of two, and all."""
    ns = {1, num_quantizers}
    n = 2
    while n < num_quantizers:
        ns.add(n)
        n *= 2
    return sorted(ns)


class BestExporter:
    """Keeps `workdir/best`: generator params + config of the best eval mel distance so far.

    Written through Orbax (atomic rename), readable by `jax_codec.inference` without training code.
    """

    def __init__(self, workdir: str):
        root = epath.Path(workdir if is_remote(workdir) else os.path.abspath(workdir))
        self.path = root / "best"
        self.meta_path = self.path / "best.json"
        self.best = math.inf
        if self.meta_path.exists():
            self.best = float(json.loads(self.meta_path.read_text())["eval_mel"])

    def maybe_export(
        self, step: int, mel: float, params: Any, config: ml_collections.ConfigDict
    ) -> bool:
        if not mel < self.best:
            return False
        self.best = mel
        tmp = self.path.parent / (self.path.name + ".tmp")
        if jax.process_index() == 0 and tmp.exists():
            tmp.rmtree()
        # Every process takes part (each writes its shards); Orbax waits for all of them.
        checkpoints.save_pytree(tmp / "params", params)
        if jax.process_index() == 0:
            _write_text(tmp / "config.json", json.dumps(config.to_dict(), default=list))
            _write_text(tmp / "best.json", json.dumps({"step": step, "eval_mel": mel}))
            old = self.path.parent / (self.path.name + ".old")
            if old.exists():
                old.rmtree()
            if self.path.exists():
                self.path.rename(old)
            tmp.rename(self.path)
            if old.exists():
                old.rmtree()
        return True


# Compiled functions per (config minus run-length fields, devices): a second run in the same
# process (resume tests, notebooks) reuses them instead of tracing and compiling again.
_RUN_LENGTH_KEYS = ("num_steps", "log_every", "eval_every", "checkpoint_every")
_COMPILED: dict = {}


def _compiled_functions(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> tuple:
    d = config.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k not in _RUN_LENGTH_KEYS}
    key = (
        json.dumps(d, sort_keys=True, default=str),
        tuple(x.id for x in mesh.devices.flat),
        mesh.shape["fsdp"],
    )
    if key not in _COMPILED:
        trainer = Trainer(config)
        codec = trainer.codec
        init_key = jax.random.split(jax.random.key(int(config.train.seed)))[0]
        abstract = jax.eval_shape(trainer.init_state, init_key)
        shardings = sh.state_shardings(abstract, mesh)
        init_fn = state_initializer(trainer, mesh, shardings)
        train_step = compile_train_step(trainer, mesh, shardings)
        # Replicated outputs: every process can read them (multi-host: all processes must
        # call every jitted function over the mesh, even when only process 0 uses the result).
        out = sh.replicated(mesh)
        eval_fns = {
            n: jax.jit(lambda p, b, n=n: trainer.eval_step(p, b, n), out_shardings=out)
            for n in eval_bitrates(codec.num_quantizers)
        }
        _COMPILED.clear()  # keep one entry: compiled executables hold memory
        _COMPILED[key] = (trainer, abstract, shardings, init_fn, train_step, eval_fns)
    return _COMPILED[key]


def report_data(data: pipeline.TrainData, writer, bar, workdir: str, step: int, is_main: bool):
    """Print the data summary (what was skipped or converted) and keep it with the run."""
    text = data.summary()
    for line in text.splitlines():
        logging.info("%s", line)
    bar.write(text)
    if is_main:
        writer.write_text(step, "data/summary", text)
        report = json.dumps([r.to_dict() for r in data.reports], indent=1)
        _write_text(epath.Path(workdir) / "data_report.json", report)


class HostProgress:
    """The progress line of a process other than 0: step, its rows, steps/s, data rejects."""

    def __init__(self, num_steps: int, start: int, rows: int, batch: int, audio_per_row: float):
        self.num_steps, self.rows, self.batch = num_steps, rows, batch
        self.audio_per_row = audio_per_row
        self.prefix = f"host {jax.process_index()}/{jax.process_count()}"
        self._step, self._time, self._printed = start, time.perf_counter(), -math.inf

    def update(self, step: int, data_stats: dict, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._printed < HOST_LINE_SECONDS:
            return
        rate = (step - self._step) / max(now - self._time, 1e-9)
        self._step, self._time, self._printed = step, now, now
        rejects = ", ".join(f"{k.removeprefix('data/')} {int(v)}" for k, v in data_stats.items())
        print(
            f"{self.prefix}: step {step}/{self.num_steps}, {self.rows} of {self.batch} rows "
            f"per step from this host's data, {rate:.3g} steps/s, "
            f"{rate * self.rows * self.audio_per_row:.3g} audio s/s from this host"
            + (f", data: {rejects}" if rejects else ""),
            file=sys.stderr,
            flush=True,
        )


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, init_from: str | None = None
) -> dict:
    """Train `config` in `workdir` (resuming if it holds checkpoints); returns the last metrics.

    `init_from`: a checkpoint (e.g. from `python -m jax_codec.convert`) whose generator weights
    replace the fresh ones of a new run (discriminators stay fresh); ignored when resuming.
    """
    mesh = sh.make_mesh(config.mesh)
    validate_run(config, mesh)
    batch_sharding = sh.batch_sharding(mesh)
    rows = sh.process_rows(batch_sharding, int(config.train.batch_size))
    # Data first: a bad data flag fails in seconds, not after compiling the step.
    codec = build_codec(config.model)
    segment = segment_samples(config, codec)
    remote = is_remote(workdir)
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    # Local files (the folder index cache, logs) cannot go to a gs:// work dir.
    local_dir = os.path.join("runs", "_remote", epath.Path(workdir).name) if remote else workdir
    data_cache = os.path.join(local_dir, "data_index")
    data = pipeline.build_train_data(
        config, codec.sample_rate, segment, cache_dir=data_cache, rows=rows
    )
    m = codec.length_multiple
    eval_len = max(m, int(EVAL_SECONDS * codec.sample_rate) // m * m)
    eval_audio = pipeline.eval_batch(
        config, codec.sample_rate, eval_len, EVAL_EXAMPLES, cache_dir=data_cache
    )
    trainer, abstract, shardings, init_fn, train_step, eval_fns = _compiled_functions(config, mesh)
    codec = trainer.codec
    is_main = jax.process_index() == 0
    if jax.process_count() > 1:
        span = (
            f"{rows[0]}-{rows[-1]}"
            if np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))
            else rows.tolist()
        )
        print(
            f"host {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} of "
            f"{jax.device_count()} {jax.devices()[0].platform} devices, feeds rows {span} of "
            f"each global batch of {config.train.batch_size}",
            file=sys.stderr,
            flush=True,
        )
    init_key, step_key = jax.random.split(jax.random.key(int(config.train.seed)))
    data_iter = iter(data.dataset)

    ckpt = checkpoints.Checkpointer(
        workdir, max_to_keep=3, save_every=int(config.train.checkpoint_every)
    )
    abstract_sharded = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
    try:
        restored = ckpt.restore_latest(abstract_sharded, data_iter)
    except checkpoints.CheckpointMismatchError:
        ckpt.close()
        raise
    except Exception as e:  # a damaged checkpoint: say which and how to get past it
        ckpt.close()
        raise checkpoints.CheckpointMismatchError(
            f"could not restore the latest checkpoint in {ckpt.directory} "
            f"({type(e).__name__}: {str(e)[:300]}). Move that damaged checkpoints/<step> "
            "directory away to resume from an earlier step, or start a new --workdir."
        ) from None
    if restored is None:
        state = init_fn(init_key)
        start = 0
        if init_from:
            from jax_codec.convert.finetune import init_generator_from

            try:
                state = init_generator_from(state, init_from, config)
            except Exception:
                ckpt.close()
                raise
            logging.warning(
                "Initialised from %s (see the line above for what was taken).", init_from
            )
    else:
        state, start = restored.state, int(restored.step)
        logging.info("Resumed from %s at step %d", ckpt.directory, start)
        if init_from:
            logging.warning(
                "--init_from=%s ignored: resuming the run in %s at step %d.",
                init_from,
                ckpt.directory,
                start,
            )

    writer = tlog.MetricWriter(local_dir, enabled=is_main)
    if is_main and remote:
        print(f"TensorBoard and metrics.jsonl go to {os.path.abspath(local_dir)}", file=sys.stderr)
    num_steps = int(config.train.num_steps)
    bar = tlog.ProgressBar(
        num_steps,
        start,
        audio_seconds_per_step=config.train.batch_size * segment / codec.sample_rate,
    )
    host_line = None
    if not is_main:
        audio_per_row = segment / codec.sample_rate
        host_line = HostProgress(
            num_steps, start, len(rows), config.train.batch_size, audio_per_row
        )
    best = BestExporter(workdir)
    if is_main and start == 0:
        text = json.dumps(config.to_dict(), indent=1, default=list)
        _write_text(epath.Path(workdir) / "config.json", text)
    report_data(data, writer, bar, workdir, start, is_main)

    def evaluate(step: int) -> dict:
        # Every process calls every jitted function over the mesh; only process 0 logs.
        out, recons = {}, {}
        for n, fn in eval_fns.items():
            m = jax.device_get(fn(state.gen_params, eval_audio))
            recons[n] = np.asarray(m["audio"])
            out.update(listener_metrics(eval_audio, recons[n], codec.sample_rate, n))
            out[f"eval/mel/{n}q"] = float(m["mel"])
            if "mel_side" in m:  # a stereo model
                out[f"eval/mel_side/{n}q"] = float(m["mel_side"])
        k = codec.num_quantizers
        # Does each added codebook help? Below 1 when all levels beat the first alone.
        out["eval/mel_ratio_all_to_1q"] = out[f"eval/mel/{k}q"] / max(out["eval/mel/1q"], 1e-9)
        # Does the output follow the input down? A model that decodes silence (and a quiet
        # passage) to a frame-rate buzz shows here and nowhere else (benchmarks/idle_output.py).
        # The same jitted function and shapes: no new compilation.
        gain = np.float32(10.0 ** (-QUIET_DB / 20.0))
        quiet = jax.device_get(eval_fns[k](state.gen_params, eval_audio * gain))["audio"]
        silent = jax.device_get(eval_fns[k](state.gen_params, eval_audio * np.float32(0)))["audio"]
        out["eval/silence_dbfs"] = level_dbfs(silent)
        out["eval/quiet_gain_db"] = level_dbfs(quiet) - (level_dbfs(eval_audio) - QUIET_DB)
        if eval_audio.ndim == 3 and eval_audio.shape[-1] == 2:
            # Does mono stay mono? The batch fed with both channels their mean (a near-mono
            # passage); the output's side level relative to its mid, in dB. Dual-mono coding
            # gives no side at all (-240), a joint model its own side floor.
            mono = match_channels(match_channels(eval_audio, 1), 2)
            y = np.asarray(jax.device_get(eval_fns[k](state.gen_params, mono))["audio"])
            out["eval/mono_side_db"] = mono_side_db(y)
        writer.write_scalars(step, out)
        if is_main:
            sr = codec.sample_rate
            audio = {"audio/input": eval_audio[0]}
            images = {"spectrogram/input": tlog.spectrogram_image(eval_audio[0], sr)}
            for n, y in recons.items():
                audio[f"audio/recon_{n}q"] = y[0]
                images[f"spectrogram/recon_{n}q"] = tlog.spectrogram_image(y[0], sr)
            writer.write_audio(step, audio, sr)
            writer.write_images(step, images)
        full = f"eval/mel/{k}q"
        distributed.barrier(f"eval_{step}")  # before Orbax's collective barriers in the export
        best.maybe_export(step, out[full], state.gen_params, config)
        bar.write(
            f"step {step}: eval mel {out[full]:.3f} (1q {out['eval/mel/1q']:.3f}), "
            f"SI-SDR {out[f'eval/si_sdr/{k}q']:.2f} dB, "
            f"loudness off by {out[f'eval/loudness_diff/{k}q']:.2f} LU"
        )
        return out

    metrics: dict = {}
    watch = tlog.DivergenceWatch()
    step = start
    if start == 0 and num_steps > 0:
        metrics.update(evaluate(0))
    if jax.process_count() > 1 and step < num_steps:
        # Compile ahead, then start together: the first collective must not wait for a
        # process that is still compiling (gloo on CPU gives up after ~30 s).
        global_batch = jax.ShapeDtypeStruct(
            trainer.batch_shape(int(config.train.batch_size)), np.float32, sharding=batch_sharding
        )
        train_step = train_step.lower(abstract_sharded, global_batch, step_key).compile()
        distributed.barrier("train_step_compiled")
    try:
        while step < num_steps:
            batch = pipeline.make_global_batch(next(data_iter), batch_sharding)
            state, step_metrics = train_step(state, batch, step_key)
            step += 1
            if step % config.train.log_every == 0 or step == num_steps:
                scalars = {k: float(v) for k, v in jax.device_get(step_metrics).items()}
                scalars.update(data.stats.snapshot())
                writer.write_scalars(step, scalars)
                bar.update(step, scalars)
                for warning in watch.update(step, scalars):
                    bar.write(f"warning: {warning}")
                    logging.warning("%s", warning)
                    writer.write_text(step, "train/warning", warning)
                if host_line is not None:
                    host_line.update(step, data.stats.snapshot(), force=step == num_steps)
                metrics.update(scalars)
            if step % config.train.eval_every == 0 or step == num_steps:
                metrics.update(evaluate(step))
            if ckpt.maybe_save(step, state, data_iter, config):
                bar.write(f"stopping at step {step} after saving a checkpoint")
                break
        ckpt.save(step, state, data_iter, config, force=True)
    finally:
        ckpt.close()
        bar.close()
        writer.close()
    metrics["step"] = step
    return metrics
