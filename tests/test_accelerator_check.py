"""benchmarks/accelerator_check.sh: its report, and (slow) its dry run on this CPU.

The real run needs a GPU or TPU (benchmarks/README.md, "Accelerator check"); the dry run goes
through the same stages with tiny models so the script cannot rot unnoticed. shellcheck runs
on it with the launch scripts (tests/test_distributed.py).
"""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import subprocess_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import accelerator_check  # noqa: E402

TRAIN_FIELDS = ("step_median_s", "audio_s_per_s", "gflop_per_step", "tflops_per_s", "mfu")


def test_peak_table_matches_device_kinds():
    peak = accelerator_check.peak_tflops
    assert peak("NVIDIA H200") == peak("NVIDIA H100 80GB HBM3") == 989.0
    assert peak("NVIDIA H100 PCIe") == 756.0  # not the SXM figure
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0 and peak("NVIDIA L4") == 121.0
    assert peak("TPU v5 lite") == 197.0 and peak("TPU v5") == 459.0
    assert peak("TPU v6 lite") == 918.0 and peak("TPU v4") == 275.0
    assert peak("cpu") is None


def _write(path, value):
    with open(path, "w") as f:
        json.dump(value, f)


def test_report_gathers_stages_tests_and_ratio(tmp_path):
    train = {"batch_size": 32, "segment_samples": 16384, "compile_s": 60.0, "mfu": 0.41}
    train.update(step_median_s=0.5, audio_s_per_s=23.8, gflop_per_step=9890.0)
    train.update(tflops_per_s=19.8, peak_tflops=989.0, peak_source="table (dense bf16)")
    _write(tmp_path / "stage_devices.json", {"device_kind": "NVIDIA H200", "count": 1})
    _write(tmp_path / "stage_train_base.json", train)
    _write(tmp_path / "stage_train_dac_44khz.json", {**train, "step_median_s": 0.25})
    _write(tmp_path / "stage_torch_dac.json", {**train, "step_median_s": 0.75})
    _write(tmp_path / "stage_streaming.json", {"error": ["Traceback", "ValueError: boom"]})
    (tmp_path / "pytest.xml").write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1" time="9.5">'
        '<testcase classname="tests.test_x" name="test_a"/>'
        '<testcase classname="tests.test_x" name="test_b"><failure message="no"/></testcase>'
        '<testcase classname="tests.test_x" name="test_c"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    args = type("Args", (), {"out": str(tmp_path), "dry_run": False})()
    r = accelerator_check.report(args)
    assert r == json.loads((tmp_path / "accelerator_check.json").read_text())
    assert r["devices"]["device_kind"] == "NVIDIA H200"
    assert r["pytest"]["passed"] == 1 and r["pytest"]["failed"] == ["tests.test_x::test_b"]
    assert r["dac_44khz_speedup_vs_pytorch"] == pytest.approx(3.0)
    md = (tmp_path / "accelerator_check.md").read_text()
    assert "1 passed, 1 failed, 1 skipped" in md and "FAILED tests.test_x::test_b" in md
    assert "| base | 32 x 16384 | 60 | 500 | 23.8 | 9.89e+03 | 19.8 | 0.41 |" in md
    assert "DAC-44k step: 3.00x PyTorch DAC" in md and "streaming: error: ValueError: boom" in md


@pytest.mark.slow  # ~85 s of CPU: two tiny train steps, PyTorch DAC, a stream
def test_dry_run_writes_finite_report(tmp_path):
    if not all(importlib.util.find_spec(m) for m in ("torch", "dac")):  # dac needs a stand-in
        pytest.skip("needs torch and descript-audio-codec (PyTorch DAC's train step)")
    r = subprocess.run(
        ["bash", "benchmarks/accelerator_check.sh", "--dry-run", "--out", str(tmp_path)],
        cwd=ROOT,
        env=subprocess_env(devices=1, PYTHON=sys.executable),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "accelerator_check.json").read_text())
    assert report["dry_run"] and report["devices"]["platform"] == "cpu"
    assert report["pytest"]["passed"] >= 1 and not report["pytest"]["failed"]
    for name in ("train_base", "train_dac_44khz"):
        stage = report[name]
        assert "error" not in stage, stage
        assert stage["dtype"] == "bfloat16"
        for key in TRAIN_FIELDS:
            assert math.isfinite(stage[key]) and stage[key] > 0, (name, key, stage[key])
    torch_dac = report["torch_dac"]
    assert "error" not in torch_dac, torch_dac
    assert torch_dac["batch_size"] == report["train_dac_44khz"]["batch_size"]
    assert torch_dac["segment_samples"] == report["train_dac_44khz"]["segment_samples"]
    assert math.isfinite(report["dac_44khz_speedup_vs_pytorch"])
    assert "error" not in report["streaming"], report["streaming"]
    assert all(math.isfinite(c["rtf"]) and c["rtf"] > 0 for c in report["streaming"]["cases"])
    md = (tmp_path / "accelerator_check.md").read_text()
    for text in ("(dry run)", "| base |", "| dac_44khz |", "PyTorch DAC-44k", "MFU", "RTF"):
        assert text in md, text


def _dry_run_stages(tmp_path, stages: str) -> subprocess.CompletedProcess:
    """`accelerator_check.sh --dry-run --stages STAGES` into tmp_path; it must succeed."""
    r = subprocess.run(
        ["bash", "benchmarks/accelerator_check.sh", "--dry-run", "--stages", stages]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        env=subprocess_env(devices=1, PYTHON=sys.executable),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_stages_subset_runs_only_those(tmp_path):
    """`--stages devices`: the devices stage alone (with its start-up timings), then the report."""
    r = _dry_run_stages(tmp_path, "devices")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "accelerator_check.json",
        "accelerator_check.md",
        "stage_devices.json",
    ]
    devices = json.loads((tmp_path / "accelerator_check.json").read_text())["devices"]
    assert devices["platform"] == "cpu" and devices["first_op_s"] > 0
    assert set(devices["conv_compile_s"]) == {"default", "autotune_off"}
    assert "== train step" not in r.stdout and "== tests" not in r.stdout


def test_streaming_stage_runs_alone(tmp_path):
    """The streaming stage's dry run needs no torch: it times the base codec, every case finite."""
    _dry_run_stages(tmp_path, "streaming")
    s = json.loads((tmp_path / "accelerator_check.json").read_text())["streaming"]
    assert "error" not in s, s
    assert s["overrides"] == {} and s["config"] == "configs/base.py:runlocal"
    assert [c["case"] for c in s["cases"]] == ["1 stream", "2 streams"]
    assert all(math.isfinite(c["rtf"]) and c["rtf"] > 0 for c in s["cases"])
    assert "RTF" in (tmp_path / "accelerator_check.md").read_text()


def test_unknown_option_or_stage_is_refused():
    r = subprocess.run(
        ["bash", "benchmarks/accelerator_check.sh", "--bogus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "--stages LIST" in r.stderr
    r = subprocess.run(
        ["bash", "benchmarks/accelerator_check.sh", "--dry-run", "--stages", "devices,train-base"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "unknown stage train-base" in r.stderr


def test_reference_stand_ins_cover_a_machine_without_ipython():
    """An accelerator image without IPython (audiotools.post imports it) still imports dac."""
    if not all(importlib.util.find_spec(m) for m in ("torch", "dac")):
        pytest.skip("needs torch and descript-audio-codec")
    code = (
        "import sys; sys.modules['IPython'] = sys.modules['IPython.display'] = None\n"
        "import learning_vs_dac as l; l._torchaudio_stand_in(); import dac; print(dac.DAC.__name__)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.join(ROOT, "benchmarks"),
        env=subprocess_env(devices=1),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and r.stdout.strip() == "DAC", r.stderr[-2000:]
