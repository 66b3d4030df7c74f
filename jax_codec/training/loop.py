"""The training run: data, sharded state, compiled step, logs, evaluation, checkpoints, resume.

Resume order (same on every process): build the abstract state and its shardings -> restore
the latest complete checkpoint in `workdir/checkpoints` (train state, then the grain iterator
position) -> continue at its step. Step RNG is `fold_in(key, step)`, so nothing else is needed
for a resumed run to take exactly the steps an uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jax_codec.config import ConfigError
from jax_codec.data import pipeline
from jax_codec.models.codec import build_codec
from jax_codec.training import checkpoints
from jax_codec.training import logging as tlog
from jax_codec.training import sharding as sh
from jax_codec.training.step import Trainer, compile_train_step, segment_samples

EVAL_EXAMPLES = 8
EVAL_SECONDS = 1.0


def validate_run(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> None:
    """Checks that need the devices; raise ConfigError before anything is compiled."""
    t = config.train
    for key in ("num_steps", "batch_size", "log_every", "eval_every", "checkpoint_every"):
        if int(t[key]) < (0 if key == "num_steps" else 1):
            raise ConfigError(f"train.{key}={t[key]} must be a positive integer")
    if t.batch_size % mesh.size:
        raise ConfigError(
            f"train.batch_size={t.batch_size} is not divisible by the {mesh.size} devices; "
            f"use a multiple of {mesh.size} (e.g. --config.train.batch_size="
            f"{max(1, round(t.batch_size / mesh.size)) * mesh.size})"
        )


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
        self.path = os.path.join(os.path.abspath(workdir), "best")
        self.meta_path = os.path.join(self.path, "best.json")
        self.best = math.inf
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                self.best = float(json.load(f)["eval_mel"])

    def maybe_export(
        self, step: int, mel: float, params: Any, config: ml_collections.ConfigDict
    ) -> bool:
        if not mel < self.best:
            return False
        self.best = mel
        tmp = self.path + ".tmp"
        ckptr = ocp.StandardCheckpointer()
        if jax.process_index() == 0 and os.path.exists(tmp):
            shutil.rmtree(tmp)
        ckptr.save(os.path.join(tmp, "params"), params)
        ckptr.wait_until_finished()
        if jax.process_index() == 0:
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(config.to_dict(), f, default=list)
            with open(os.path.join(tmp, "best.json"), "w") as f:
                json.dump({"step": step, "eval_mel": mel}, f)
            old = self.path + ".old"
            if os.path.exists(self.path):
                os.replace(self.path, old)
            os.replace(tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
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
        init_fn = jax.jit(trainer.init_state, out_shardings=shardings)
        train_step = compile_train_step(trainer, mesh, shardings)
        eval_fns = {
            n: jax.jit(lambda p, b, n=n: trainer.eval_step(p, b, n))
            for n in eval_bitrates(codec.num_quantizers)
        }
        recon_fn = jax.jit(
            lambda p, b, n: codec.apply(p, b[..., None], n).audio[..., 0], static_argnums=2
        )
        _COMPILED.clear()  # keep one entry: compiled executables hold memory
        _COMPILED[key] = (trainer, abstract, shardings, init_fn, train_step, eval_fns, recon_fn)
    return _COMPILED[key]


def report_data(data: pipeline.TrainData, writer, bar, workdir: str, step: int, is_main: bool):
    """Print the data summary (what was skipped or converted) and keep it with the run."""
    text = data.summary()
    for line in text.splitlines():
        logging.info("%s", line)
    bar.write(text)
    if is_main:
        writer.write_text(step, "data/summary", text)
        with open(os.path.join(workdir, "data_report.json"), "w") as f:
            json.dump([r.to_dict() for r in data.reports], f, indent=1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train `config` in `workdir` (resuming if it holds checkpoints); returns the last metrics."""
    mesh = sh.make_mesh(config.mesh)
    validate_run(config, mesh)
    # Data first: a bad data flag fails in seconds, not after compiling the step.
    codec = build_codec(config.model)
    segment = segment_samples(config, codec)
    os.makedirs(workdir, exist_ok=True)
    data_cache = os.path.join(workdir, "data_index")
    data = pipeline.build_train_data(config, codec.sample_rate, segment, cache_dir=data_cache)
    m = codec.length_multiple
    eval_len = max(m, int(EVAL_SECONDS * codec.sample_rate) // m * m)
    eval_audio = pipeline.eval_batch(
        config, codec.sample_rate, eval_len, EVAL_EXAMPLES, cache_dir=data_cache
    )
    trainer, abstract, shardings, init_fn, train_step, eval_fns, recon_fn = _compiled_functions(
        config, mesh
    )
    codec = trainer.codec
    is_main = jax.process_index() == 0
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
    else:
        state, start = restored.state, int(restored.step)
        logging.info("Resumed from %s at step %d", ckpt.directory, start)

    batch_sharding = sh.batch_sharding(mesh)

    writer = tlog.MetricWriter(workdir, enabled=is_main)
    num_steps = int(config.train.num_steps)
    bar = tlog.ProgressBar(
        num_steps,
        start,
        audio_seconds_per_step=config.train.batch_size * segment / codec.sample_rate,
    )
    best = BestExporter(workdir)
    if is_main and start == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            json.dump(config.to_dict(), f, indent=1, default=list)
    report_data(data, writer, bar, workdir, start, is_main)

    def evaluate(step: int) -> dict:
        out = {}
        for n, fn in eval_fns.items():
            m = jax.device_get(fn(state.gen_params, eval_audio))
            out[f"eval/mel/{n}q"] = float(m["mel"])
            out[f"eval/si_sdr/{n}q"] = float(m["si_sdr"])
        writer.write_scalars(step, out)
        if is_main:
            sr = codec.sample_rate
            audio = {"audio/input": eval_audio[0]}
            images = {"spectrogram/input": tlog.spectrogram_image(eval_audio[0], sr)}
            for n in eval_fns:
                y = np.asarray(jax.device_get(recon_fn(state.gen_params, eval_audio[:1], n)))[0]
                audio[f"audio/recon_{n}q"] = y
                images[f"spectrogram/recon_{n}q"] = tlog.spectrogram_image(y, sr)
            writer.write_audio(step, audio, sr)
            writer.write_images(step, images)
        full = f"eval/mel/{codec.num_quantizers}q"
        best.maybe_export(step, out[full], state.gen_params, config)
        bar.write(
            f"step {step}: eval mel {out[full]:.3f}, SI-SDR {out[f'eval/si_sdr/{codec.num_quantizers}q']:.2f} dB"
        )
        return out

    metrics: dict = {}
    step = start
    if start == 0 and num_steps > 0:
        metrics.update(evaluate(0))
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
