"""The real training command in a subprocess, and exact resume in-process."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import subprocess_env

from jax_codec.config import ConfigError, apply_overrides, load_config
from jax_codec.training import checkpoints
from jax_codec.training.loop import train_and_evaluate
from jax_codec.training.step import Trainer

TINY = [
    "--config.discriminator.periods=(2, 3)",
    "--config.discriminator.channels=4",
    "--config.train.segment_seconds=0.1",
    "--config.train.batch_size=2",
    "--config.train.log_every=1",
    "--config.model.vq_strides=(2, 1)",
    # A smaller graph to compile (these tests check the command's plumbing, not the losses).
    "--config.discriminator.mrd_window_lengths=(512,)",
    "--config.loss.mel_window_lengths=(64, 512)",
    "--config.loss.mel_n_mels=(10, 80)",
    "--config.loss.onset_weight=0.0",
]


def run_cli(workdir, *extra, wait=True):
    env = subprocess_env()
    cmd = [
        sys.executable,
        "-m",
        "jax_codec.train",
        "--config=configs/base.py:runlocal",
        f"--workdir={workdir}",
        *TINY,
        *extra,
    ]
    if not wait:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def metric_steps(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line)["step"] for line in f]


def _music_folder(root):
    """Three short files (mono and stereo, three sample rates) and one broken file."""
    import soundfile as sf

    music = root / "music"
    music.mkdir()
    for i, (sr, ch) in enumerate([(44100, 1), (48000, 2), (22050, 1)]):
        t = np.arange(int(1.5 * sr)) / sr
        x = 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t)[:, None] * np.ones(ch)
        sf.write(str(music / f"song{i}.flac"), x.astype(np.float32), sr)
    (music / "broken.wav").write_bytes(b"RIFF not really")
    return music


def test_cli_trains_on_a_folder_stops_on_sigterm_and_resumes(tmp_path):
    """The command a user runs: a folder of audio, stopped with SIGTERM (checkpoint, exit 0),
    then resumed to a later step. Two launches check what used to take five."""
    music = _music_folder(tmp_path)
    source = f"--config.data.source=folder:{music}"
    wd = str(tmp_path / "run")
    proc = run_cli(
        wd,
        source,
        "--config.train.num_steps=100000",
        "--config.train.checkpoint_every=100000",
        "--config.train.eval_every=100000",
        wait=False,
    )
    metrics = os.path.join(wd, "metrics.jsonl")
    deadline = time.time() + 500
    while time.time() < deadline:
        if os.path.exists(metrics) and max(metric_steps(wd), default=-1) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read())
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out

    # The data source: the files used, the broken one reported (not hidden), the index cached.
    assert f"data source folder:{music}: 3 clips" in out
    assert "broken.wav" in out
    report = json.load(open(os.path.join(wd, "data_report.json")))
    assert report[0]["used"] == 3 and sum(map(len, report[0]["skipped"].values())) == 1
    assert os.listdir(os.path.join(wd, "data_index"))

    # Everything a run writes: checkpoint, TensorBoard, metrics, the best export.
    saved = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")) if s.isdigit())
    assert saved and saved[-1] >= 2
    events = os.listdir(os.path.join(wd, "tensorboard"))
    assert any(e.startswith("events.out.tfevents") for e in events)
    assert metric_steps(wd)[:3] == [0, 1, 2]
    lines = [json.loads(x) for x in open(metrics)]
    assert any("loss/mel" in x for x in lines) and any("eval/mel/2q" in x for x in lines)
    # What a listener notices, at one and at all levels.
    evals = [x for x in lines if "eval/mel/2q" in x]
    for key in (
        "eval/loudness_diff/1q",
        "eval/level_error_db/2q",
        "eval/si_sdr/1q",
        "eval/mel_ratio_all_to_1q",
        "eval/silence_dbfs",
        "eval/quiet_gain_db",
    ):
        assert all(key in x for x in evals), key
    # The level of decoded silence is a level in dBFS, and the quiet batch's gain is measured.
    assert all(-240 < x["eval/silence_dbfs"] < 20 for x in evals)
    assert all(np.isfinite(x["eval/quiet_gain_db"]) for x in evals)
    assert os.path.exists(os.path.join(wd, "best", "params"))

    # The checkpoints are usable by inference code alone, from the work dir or a step dir.
    from jax_codec.inference import load_codec

    for path in (wd, os.path.join(wd, "checkpoints", str(saved[-1]))):
        codec, params, cfg = load_codec(path)
        assert cfg.model.vq_strides == [2, 1]
        codes = codec.apply(params, np.zeros((1, 4096, 1), np.float32), method=codec.encode)
        assert [c.shape for c in codes] == [(1, 4), (1, 8)]

    # The saved checkpoint is complete: a rerun resumes from it and runs to its end.
    end = saved[-1] + 2
    r = run_cli(wd, source, f"--config.train.num_steps={end}")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = metric_steps(wd)
    assert steps.count(1) == 1 and end - 1 in steps and end in steps  # continued
    assert str(end) in os.listdir(os.path.join(wd, "checkpoints"))


def test_bad_config_fails_before_compiling(tmp_path):
    r = run_cli(str(tmp_path / "a"), "--config.train.no_such_key=1")
    assert r.returncode == 2 and "--config.train.no_such_key=1" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli(str(tmp_path / "b"), "--config.train.segment_seconds=0.01")
    assert r.returncode != 0 and "segment_seconds" in r.stderr and "Traceback" not in r.stderr


def _tiny_config(num_steps):
    config = load_config("configs/base.py:runlocal")
    apply_overrides(
        config,
        {k.removeprefix("--config.").split("=")[0]: k.split("=", 1)[1] for k in TINY}
        | {"train.num_steps": str(num_steps), "train.eval_every": "1000", "train.batch_size": "8"},
    )
    return config


def test_batch_not_divisible_by_devices_fails(tmp_path):
    config = _tiny_config(1)
    apply_overrides(config, {"train.batch_size": "6"})
    with pytest.raises(ConfigError, match="divisible by the 8 devices"):
        train_and_evaluate(config, str(tmp_path))


def _final_state(workdir, config):
    trainer = Trainer(config)
    abstract = jax.eval_shape(trainer.init_state, jax.random.key(0))
    with checkpoints.Checkpointer(workdir, handle_sigterm=False) as ckpt:
        return jax.device_get(ckpt.restore_latest(abstract))


@pytest.mark.slow  # three runs on 8 devices; the default suite resumes through the CLI above
def test_resume_is_exact(tmp_path, monkeypatch):
    # 4 steps straight vs 2 steps, stop, resume for 2 more: bitwise equal on CPU (8 devices).
    from jax_codec.training import loop

    monkeypatch.setattr(loop, "EVAL_SECONDS", 0.1)  # evaluation is not under test here
    monkeypatch.setattr(loop, "EVAL_EXAMPLES", 2)
    straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train_and_evaluate(_tiny_config(4), straight)
    train_and_evaluate(_tiny_config(2), resumed)
    train_and_evaluate(_tiny_config(4), resumed)
    a, step_a = _final_state(straight, _tiny_config(4))
    b, step_b = _final_state(resumed, _tiny_config(4))
    assert step_a == step_b == 4
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    moved = [np.abs(np.asarray(x)).sum() for x in jax.tree.leaves(a.gen_params)]
    assert sum(moved) > 0


def test_corrupt_or_missing_checkpoint_gives_clear_message(tmp_path):
    from jax_codec.inference import CheckpointNotFoundError, load_codec

    with pytest.raises(CheckpointNotFoundError, match="no jax_codec checkpoint"):
        load_codec(str(tmp_path))
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_codec(str(tmp_path / "missing"))
    # A step directory whose array data was damaged.
    step = tmp_path / "checkpoints" / "7"
    (step / "state").mkdir(parents=True)
    (step / "config").mkdir()
    (step / "config" / "metadata").write_text(json.dumps({"config": _tiny_config(1).to_dict()}))
    (step / "state" / "_METADATA").write_text("{not json")
    with pytest.raises(CheckpointNotFoundError, match="could not read the checkpoint"):
        load_codec(str(tmp_path))
    # A half-written save (Orbax tmp dir) is never picked up.
    (step.parent / "9.orbax-checkpoint-tmp").mkdir()
    from jax_codec.inference import resolve_checkpoint

    assert resolve_checkpoint(str(tmp_path)) == ("step", str(step))


def test_cli_bad_data_source_is_one_clean_line(tmp_path):
    wd = str(tmp_path / "run")
    r = run_cli(wd, f"--config.data.source=folder:{tmp_path}/missing")
    assert r.returncode != 0
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


CACHE_PROBE = """
import sys, jax, jax.numpy as jnp
from jax_codec.train import enable_compilation_cache
print(enable_compilation_cache(jax, sys.argv[1]))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
"""


@pytest.mark.parametrize("from_env", [False, True])
def test_compilation_cache_directory_is_used_and_env_wins(tmp_path, from_env):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    flag_dir, env_dir = tmp_path / "flag" / "xla", tmp_path / "env"
    if from_env:
        env["JAX_COMPILATION_CACHE_DIR"] = str(env_dir)
    r = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE, str(flag_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    used = env_dir if from_env else flag_dir
    assert r.stdout.strip() == str(used)
    assert any(p.name.startswith("jit_") for p in used.iterdir())  # the compiled function
    assert not (flag_dir.exists() and from_env)


def test_compilation_cache_can_be_disabled():
    import types

    from jax_codec.train import enable_compilation_cache

    updates = []
    fake = types.SimpleNamespace(
        config=types.SimpleNamespace(
            jax_compilation_cache_dir=None, update=lambda *a: updates.append(a)
        )
    )
    assert enable_compilation_cache(fake, "") is None and not updates
    assert enable_compilation_cache(fake, "~/c") == os.path.expanduser("~/c")
    assert updates == [("jax_compilation_cache_dir", os.path.expanduser("~/c"))]


def test_level_dbfs_removes_each_rows_dc():
    from jax_codec.training.loop import level_dbfs

    square = np.tile([0.1, -0.1], (2, 50)).astype(np.float32)  # [2, 100], RMS 0.1
    assert abs(level_dbfs(square) + 20.0) < 1e-6
    assert abs(level_dbfs(square + np.array([[0.5], [-0.3]])) + 20.0) < 1e-6
    assert abs(level_dbfs(np.stack([square, square], -1)) + 20.0) < 1e-6  # [B, T, C]
    assert level_dbfs(np.zeros((2, 100))) < -239.0
