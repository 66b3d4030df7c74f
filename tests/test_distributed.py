"""Scale-out: jax.distributed start-up, host-major mesh, per-host data, preflight, launch scripts.

The main test trains 3 steps of runlocal in two processes on localhost (two fake CPU devices
each, gloo collectives) through the real CLI and checks the result against one process with
four devices: same data row for row, same params, and a checkpoint that restores in a single
process.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import types

import grain
import jax
import numpy as np
import pytest
from conftest import subprocess_env

from jax_codec.config import load_config
from jax_codec.data import pipeline
from jax_codec.training import distributed, sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = [
    "--config=configs/base.py:runlocal",
    "--config.discriminator.periods=(2, 3)",
    "--config.discriminator.channels=4",
    "--config.train.segment_seconds=0.1",
    "--config.train.batch_size=4",
    "--config.model.vq_strides=(2, 1)",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, devices: int, wait: bool = True):
    env = subprocess_env(devices)
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "jax_codec.train", *args]
    if not wait:
        return subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)


# ------------------------------------------------------------------ maybe_initialize (fast)


@pytest.fixture
def no_cluster(monkeypatch):
    """No SLURM/MPI/TPU around, and a jax.distributed.initialize that only records its call."""
    for var in list(os.environ):
        if var.startswith(("SLURM_", "OMPI_", "TPU_", "MEGASCALE_")):
            monkeypatch.delenv(var)
    monkeypatch.setattr(distributed, "_tpu_chips", lambda: 0)
    monkeypatch.setattr(distributed, "_initialized_by", None)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    return calls


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_processes=2, process_id=2, coordinator_address="h:1"), "must be < --num_proc"),
        (dict(num_processes=2, process_id=0), "--coordinator_address=HOST:PORT is required"),
        (dict(num_processes=2, coordinator_address="h:1"), "--process_id is required"),
        (dict(process_id=1), "--num_processes is required"),
        (dict(coordinator_address="h:1"), "--num_processes is required"),
        (dict(num_processes=0), "must be >= 1"),
        (dict(num_processes=2, process_id=-1, coordinator_address="h:1"), "must be >= 0"),
        (dict(num_processes=1, process_id=1), "must be < --num_processes=1"),
        (dict(num_processes=2, process_id=1, coordinator_address="host"), "must be HOST:PORT"),
        (dict(num_processes=2, process_id=1, coordinator_address="h:99999"), "must be HOST:PORT"),
        (dict(local_device_ids="0,x"), "comma-separated device numbers"),
        (dict(local_device_ids="1,1"), "distinct"),
    ],
)
def test_inconsistent_flags_fail_with_one_line(no_cluster, kwargs, match):
    with pytest.raises(distributed.DistributedError, match=match) as e:
        distributed.maybe_initialize(**kwargs)
    assert "\n" not in str(e.value)
    assert not no_cluster


def test_single_process_is_a_no_op(no_cluster):
    assert distributed.detect_cluster() is None
    assert distributed.maybe_initialize() is None
    assert distributed.maybe_initialize(num_processes=1) is None
    assert distributed.maybe_initialize(num_processes=1, process_id=0) is None
    assert not no_cluster and not jax.distributed.is_initialized()
    distributed.barrier("nothing to wait for")  # returns at once in one process


def test_explicit_flags_initialize_once(no_cluster):
    how = distributed.maybe_initialize("127.0.0.1:1234", 2, 1, "0,1")
    assert how == "flags"
    assert no_cluster == [
        dict(
            coordinator_address="127.0.0.1:1234",
            num_processes=2,
            process_id=1,
            local_device_ids=[0, 1],
        )
    ]
    assert distributed.maybe_initialize("127.0.0.1:1234", 2, 1) == "flags"  # only once
    assert len(no_cluster) == 1


def test_slurm_is_detected_only_with_several_tasks(no_cluster, monkeypatch):
    slurm = dict(
        SLURM_JOB_ID="77",
        SLURM_STEP_NODELIST="node[001-002]",
        SLURM_NTASKS="1",
        SLURM_PROCID="0",
        SLURM_LOCALID="0",
    )
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    assert distributed.detect_cluster() == ("slurm", 1)
    assert distributed.maybe_initialize() is None and not no_cluster
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert distributed.detect_cluster() == ("slurm", 16)
    assert distributed.maybe_initialize() == "slurm"
    # jax.distributed reads coordinator, count and ids from SLURM itself.
    assert no_cluster == [dict(coordinator_address=None, local_device_ids=None)]
    # `sbatch` without `srun` (no step node list) is not a multi-process step.
    monkeypatch.delenv("SLURM_STEP_NODELIST")
    assert distributed.detect_cluster() is None


def test_tpu_slice_is_detected_from_its_workers(no_cluster, monkeypatch):
    monkeypatch.setattr(distributed, "_tpu_chips", lambda: 4)
    monkeypatch.setattr(distributed, "_gce_metadata", lambda key: "10.0.0.1,10.0.0.2,10.0.0.3")
    assert distributed.detect_cluster() == ("tpu", 3)
    monkeypatch.setattr(distributed, "_gce_metadata", lambda key: "10.0.0.1")
    assert distributed.detect_cluster() == ("tpu", 1)  # a single-host slice: no-op
    assert distributed.maybe_initialize() is None and not no_cluster


# ------------------------------------------------------------------ mesh and data (fast)


def test_mesh_is_host_major():
    fake = [
        types.SimpleNamespace(id=i, process_index=p, platform="gpu")
        for i, p in enumerate([1, 0, 1, 0, 2, 2])
    ]
    grid = sharding.device_grid(fake, (3, 2))
    assert [[d.process_index for d in row] for row in grid] == [[0, 0], [1, 1], [2, 2]]
    assert [d.id for d in grid.flat] == [1, 3, 0, 2, 4, 5]
    if len(jax.devices()) != 8:  # the accelerator check runs this file on one GPU or TPU
        pytest.skip("needs 8 devices (conftest's fake CPU devices)")
    mesh = sharding.make_mesh(load_config("configs/base.py").mesh)  # 8 fake CPU devices
    assert mesh.shape == {"data": 8, "fsdp": 1}
    rows = sharding.process_rows(sharding.batch_sharding(mesh), 16)
    np.testing.assert_array_equal(rows, np.arange(16))


def test_synthetic_global_batches_do_not_depend_on_the_host_count():
    config = load_config("configs/base.py:runlocal")
    config.train.batch_size = 4  # rows to split over 1, 2 and 4 hosts
    sr, seg = 44100, 2048

    def batches(shard, rows=None, n=3):
        data = pipeline.build_train_data(config, sr, seg, shard=shard, rows=rows)
        it = iter(data.dataset)
        return [next(it) for _ in range(n)]

    one = batches(grain.sharding.ShardOptions(0, 1))
    for hosts in (2, 4):
        per_host = [batches(grain.sharding.ShardOptions(h, hosts)) for h in range(hosts)]
        for b in range(3):
            np.testing.assert_array_equal(np.concatenate([p[b] for p in per_host]), one[b])
    # A host whose devices hold rows 3 and 0 (in that order) gets exactly those rows.
    odd = batches(grain.sharding.ShardOptions(1, 2), rows=np.array([3, 0]))
    for b in range(3):
        np.testing.assert_array_equal(odd[b], one[b][[3, 0]])
    with pytest.raises(Exception, match="feeds 3 rows"):
        batches(grain.sharding.ShardOptions(0, 2), rows=np.array([0, 1, 2]))


def test_remat_keeps_the_param_tree():
    from jax_codec.config import apply_overrides
    from jax_codec.models.codec import build_codec

    config = load_config("configs/base.py:runlocal")
    x = jax.ShapeDtypeStruct((1, 4096, 1), np.float32)
    plain = jax.eval_shape(build_codec(config.model).init, jax.random.key(0), x)
    apply_overrides(config, {"model.remat": "True"})
    remat = jax.eval_shape(build_codec(config.model).init, jax.random.key(0), x)
    assert jax.tree_util.tree_structure(plain) == jax.tree_util.tree_structure(remat)
    assert jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, plain, remat))
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: a.shape == b.shape, plain, remat)))
    assert "EncoderBlock_0" in plain["params"]["encoder"]
    assert "DecoderBlock_0" in remat["params"]["decoder"]


def test_scale_out_configs_load():
    for spec, batch in [
        ("configs/tpu_v5e.py:v5e8", 8),
        ("configs/tpu_v5e.py:v5e64", 64),
        ("configs/gpu_h100.py", 8),
    ]:
        c = load_config(spec)
        assert c.model.dtype == "bfloat16" and c.mesh.data == -1 and c.mesh.fsdp == 1
        assert c.train.batch_size % batch == 0
    assert load_config("configs/tpu_v5e.py").name == "tpu_v5e8"  # the default variant
    with pytest.raises(Exception, match="needs one variant"):
        load_config("configs/tpu_v5e.py:v4")


# ------------------------------------------------------------------ preflight (subprocess)


@pytest.mark.slow  # ~100 s on 2 cores (CI runs the slow suite too)
def test_preflight_prints_memory_and_flops(tmp_path):
    r = cli(
        *SMALL,
        "--config.train.batch_size=8",
        f"--workdir={tmp_path / 'never'}",
        "--preflight_devices=4",
        "--preflight_memory_gb=0.01",
        devices=1,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "mesh data=4 x fsdp=1 over 4 cpu devices" in out, out
    assert "2 rows per device" in out
    assert "memory per device: arguments" in out and "temporaries" in out and "total" in out
    assert "FLOPs per step:" in out and "GFLOP per audio second" in out
    assert "WARNING: the estimated" in out  # 0.01 GiB is too little for anything
    assert not (tmp_path / "never").exists()  # nothing trained, nothing written
    r = cli(*SMALL, "--config.train.batch_size=6", "--preflight_devices=4", devices=1)
    assert r.returncode != 0 and "not divisible by the 4 devices" in r.stderr


# ------------------------------------------------------------------ launch scripts (fast)

SCRIPTS = ["launch/tpu_pod.sh", "launch/gpu_slurm.sbatch", "benchmarks/accelerator_check.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_launch_script_syntax(script):
    r = subprocess.run(["bash", "-n", script], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    r = subprocess.run(["shellcheck", script], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_tpu_pod_dry_run_prints_gcloud_commands():
    args = [
        "bash",
        "launch/tpu_pod.sh",
        "--dry_run",
        "--project=proj",
        "--zone=us-west4-a",
        "--accelerator=v5litepod-64",
        "--name",
        "codec64",
        "--workdir=gs://bucket/runs/v5e64",
        "--config=configs/tpu_v5e.py:v5e64",
        "--",
        "--config.train.num_steps=10",
    ]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert all(line.startswith("+ ") for line in lines), r.stdout
    gcloud = [line for line in lines if line.startswith("+ gcloud compute tpus tpu-vm")]
    assert gcloud[0].startswith("+ gcloud compute tpus tpu-vm create codec64")
    assert "--accelerator-type=v5litepod-64" in gcloud[0] and "--project=proj" in gcloud[0]
    assert any(" scp " in g and "--worker=all" in g for g in gcloud)
    install, train = gcloud[-2], gcloud[-1]
    assert "ssh codec64 --worker=all" in install and "pip\\ install" in install
    assert "ssh codec64 --worker=all" in train and "--zone=us-west4-a" in train
    for part in ("jax_codec.train", "--config=configs/tpu_v5e.py:v5e64", "gs://bucket/runs/v5e64"):
        assert part in train
    assert "--config.train.num_steps=10" in train
    # Flags are checked before anything runs.
    r = subprocess.run(args[:3] + ["--name=x"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "--accelerator is required" in r.stderr
    bad = subprocess.run(
        [*args[:-2], "--workdir=/local/dir"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "gs://" in bad.stderr


def test_slurm_dry_run_prints_srun_command():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(DRY_RUN="1", WORKDIR="/shared/run", SLURM_JOB_NUM_NODES="2")
    r = subprocess.run(
        ["bash", "launch/gpu_slurm.sbatch", "--config.train.num_steps=10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert line.startswith("+ JAX_COORDINATOR_ADDRESS=localhost:")
    assert "srun --nodes=2 --ntasks-per-node=8 --kill-on-bad-exit=1" in line
    assert "-m jax_codec.train --config=configs/gpu_h100.py --workdir=/shared/run" in line
    assert line.endswith("--config.train.num_steps=10")
    env["PER_NODE"] = "1"
    r = subprocess.run(
        ["bash", "launch/gpu_slurm.sbatch"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "JAX_LOCAL_DEVICE_IDS=0\\,1\\,2\\,3\\,4\\,5\\,6\\,7" in r.stdout
    assert "--ntasks-per-node=1" in r.stdout


# ------------------------------------------------------------------ two processes (slow)


@pytest.mark.slow  # three CLI runs compiling the step: ~11 min on a loaded 2-core machine
def test_two_processes_match_one_process(tmp_path):
    from jax_codec.inference import load_codec

    common = [*SMALL, "--config.train.batch_size=4", "--config.train.num_steps=3"]
    common.append("--config.train.log_every=1")
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    port = free_port()
    multi = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    procs = [
        cli(*common, f"--workdir={two_dir}", *multi, f"--process_id={i}", devices=2, wait=False)
        for i in range(2)
    ]
    single = cli(*common, f"--workdir={one_dir}", devices=4)
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert single.returncode == 0, single.stdout + single.stderr
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out

    # Per-host progress: process 1 prints its own lines; only process 0 writes logs.
    assert "host 1/2: 2 of 4 cpu devices, feeds rows 2-3 of each global batch of 4" in outs[1]
    assert "host 1/2: step 3/3, 2 of 4 rows per step" in outs[1]
    assert "host 0/2: 2 of 4 cpu devices, feeds rows 0-1" in outs[0]
    assert os.path.exists(two_dir / "metrics.jsonl")
    assert sorted(os.listdir(two_dir / "checkpoints")) == ["3"]

    # The checkpoint both processes wrote restores in this (single) process.
    _, p1, cfg = load_codec(str(one_dir), which="latest")
    _, p2, cfg2 = load_codec(str(two_dir), which="latest")
    assert cfg.to_dict() == cfg2.to_dict()
    flat1, flat2 = jax.tree.leaves(p1), jax.tree.leaves(p2)
    assert len(flat1) == len(flat2) > 10
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(flat1, flat2))
    moved = max(float(np.max(np.abs(np.asarray(a)))) for a in flat1)
    print(f"max |params(2 processes) - params(1 process)| = {diff:.3g} (max |param| {moved:.3g})")
    assert diff < 1e-5

    # The same losses at every step (the data matched row for row).
    def losses(d):
        rows = [json.loads(x) for x in open(d / "metrics.jsonl")]
        return [(r["step"], r["loss/mel"]) for r in rows if "loss/mel" in r]

    a, b = losses(one_dir), losses(two_dir)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3]
    np.testing.assert_allclose([x for _, x in a], [x for _, x in b], rtol=1e-5)
