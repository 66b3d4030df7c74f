"""benchmarks/joint_vs_dual_mono.py's paired analysis: settings matched by bitrate, differences
file by file (excerpts averaged first), intervals over files, wins counted per metric's sense."""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import joint_vs_dual_mono as jvd  # noqa: E402


def row(codec, k, kbps, file, **metrics):
    return {"codec": codec, "n_quantizers": k, "actual_kbps": kbps, "file": file, **metrics}


def test_paired_matches_bitrates_and_averages_excerpts():
    rows = [
        # joint: 1 kbps at n_q 1, 2 kbps at n_q 2; dual mono: 0.9 / 2.2 / 4 kbps.
        row("joint", 1, 1.0, "a", mel_distance=2.0, visqol=3.0),
        row("joint", 1, 1.0, "a", mel_distance=4.0, visqol=3.0),  # a's second excerpt
        row("joint", 1, 1.0, "b", mel_distance=1.0, visqol=2.0),
        row("joint", 2, 2.0, "a", mel_distance=1.0, visqol=4.0),
        row("joint", 2, 2.0, "b", mel_distance=1.0, visqol=4.0),
        row("dual", 1, 0.9, "a", mel_distance=5.0, visqol=2.5),
        row("dual", 1, 0.9, "b", mel_distance=1.5, visqol=2.5),
        row("dual", 2, 2.2, "a", mel_distance=2.0, visqol=3.0),
        row("dual", 2, 2.2, "b", mel_distance=3.0, visqol=3.0),
        row("dual", 4, 4.0, "a", mel_distance=0.0, visqol=5.0),
        row("dual", 4, 4.0, "b", mel_distance=0.0, visqol=5.0),
        row("opus", 1, 1.0, "a", mel_distance=9.0, visqol=1.0),
    ]
    pairs = jvd.paired(rows, "joint", "dual")
    assert [(p["joint"]["n_quantizers"], p["dual"]["n_quantizers"]) for p in pairs] == [
        (1, 1),
        (2, 2),
    ]
    mel = pairs[0]["metrics"]["mel_distance"]
    # a: mean(2, 4) - 5 = -2; b: 1 - 1.5 = -0.5.
    assert mel["files"] == 2 and mel["mean_diff"] == pytest.approx(-1.25)
    half = 12.706204736 * math.sqrt(((-2 + 1.25) ** 2 + (-0.5 + 1.25) ** 2) / 1) / math.sqrt(2)
    assert mel["ci95"] == pytest.approx(half)
    assert mel["joint_better_on"] == 2  # lower mel is better
    vis = pairs[0]["metrics"]["visqol"]
    assert vis["mean_diff"] == pytest.approx(0.0) and vis["joint_better_on"] == 1  # higher
    assert "si_sdr" not in pairs[0]["metrics"]  # no values: no entry
    table = jvd.paired_table(pairs, "joint", "dual")
    assert "| 1 | 1.00 | 1 | 0.90 | -1.250 ± " in table and "(2/2)" in table


def test_bits_at_equal_quality_interpolates_each_files_curve_and_flags_bounds():
    rows = [
        # joint at 1 kbps; file a has two excerpts (side 1.5 and 2.5: mean 2.0).
        row("joint", 1, 1.0, "a", mel_distance_side=1.5, visqol=3.5),
        row("joint", 1, 1.0, "a", mel_distance_side=2.5, visqol=3.5),
        row("joint", 1, 1.0, "b", mel_distance_side=0.5, visqol=1.0),
        row("joint", 1, 1.0, "c", mel_distance_side=5.0, visqol=1.0),
        # dual mono at 2 and 4 kbps on each file: side 3.0 -> 1.0, ViSQOL 3.0 -> 4.0.
        *[
            row("dual", k, kbps, f, mel_distance_side=side, visqol=vis)
            for f in "abc"
            for k, kbps, side, vis in ((1, 2.0, 3.0, 3.0), (2, 4.0, 1.0, 4.0))
        ],
        row("opus", 1, 1.0, "a", mel_distance_side=0.0),
    ]
    (side,) = jvd.bits_at_equal_quality(rows, "joint", "dual", "mel_distance_side")
    # a: 2.0 is halfway from 3.0 to 1.0, so halfway from 2 to 4 kbps in log: sqrt(8) kbps.
    # b: dual never reaches 0.5 (its top rate, 4 kbps, a lower bound); c: dual's lowest
    # setting already beats 5.0 (2 kbps, an upper bound that decides nothing).
    assert side["ratios"] == pytest.approx([math.sqrt(8), 4.0, 2.0])
    assert side["median_ratio"] == pytest.approx(math.sqrt(8))
    assert (side["censored_above"], side["censored_below"]) == (1, 1)
    assert side["dual_needs_more_on"] == 2 and side["files"] == 3
    assert side["sign_test_p"] == pytest.approx(0.5)  # P(X >= 2) for 3 fair coins
    (vis,) = jvd.bits_at_equal_quality(rows, "joint", "dual", "visqol")  # higher is better
    assert vis["ratios"][0] == pytest.approx(math.sqrt(8))
    assert vis["censored_below"] == 2  # b and c: 1.0 is below dual's lowest ViSQOL
    table = jvd.equal_quality_table({"mel_distance_side": [side]}, "joint", "dual")
    assert "| mel_distance_side | 1 | 1.00 | 2.83 (>= on 1) (<= on 1) | 2/3 | 0.500 |" in table


def test_paired_at_equal_rate_reads_the_other_curve_at_the_same_bits():
    rows = [
        # dual mono on each file: 1 kbps (two excerpts: side 2.5 and 3.5) and 4 kbps (side 1).
        *[
            row("dual", k, kbps, f, mel_distance_side=side, visqol=vis)
            for f in "ab"
            for k, kbps, side, vis in ((1, 1.0, 2.5, 2.0), (1, 1.0, 3.5, 2.0), (2, 4.0, 1.0, 4.0))
        ],
        # joint at 0.5 kbps (below dual's lowest rate: left out), 2 kbps and 4 kbps.
        row("joint", 1, 0.5, "a", mel_distance_side=9.0),
        row("joint", 2, 2.0, "a", mel_distance_side=1.5, visqol=3.5),
        row("joint", 2, 2.0, "b", mel_distance_side=2.5, visqol=2.5),
        row("joint", 3, 4.0, "a", mel_distance_side=0.5),
        row("opus", 2, 2.0, "a", mel_distance_side=0.0),
    ]
    low, mid, top = jvd.paired_at_equal_rate(rows, "joint", "dual")
    assert low["out_of_range"] == 1 and not low["metrics"]
    # 2 kbps is halfway from 1 to 4 kbps in log: dual's side there is (3.0 + 1.0) / 2 = 2.0
    # and its ViSQOL 3.0; a paired by nearest rate would have met 1 kbps (side 3.0) instead.
    side = mid["metrics"]["mel_distance_side"]
    assert mid["dual"] == {"n_quantizers": "interp", "kbps": 2.0} and mid["out_of_range"] == 0
    assert side["mean_diff"] == pytest.approx(0.0) and side["joint_better_on"] == 1
    assert side["ci95"] == pytest.approx(12.706204736 * math.sqrt(0.5) / math.sqrt(2))
    vis = mid["metrics"]["visqol"]
    assert vis["mean_diff"] == pytest.approx(0.0) and vis["joint_better_on"] == 1  # a: 3.5 > 3
    assert top["metrics"]["mel_distance_side"]["mean_diff"] == pytest.approx(-0.5)  # at 4 kbps
    table = jvd.equal_rate_table([low, mid, top], "joint", "dual")
    assert "| 1 | nan | interp | nan |" in table and table.splitlines()[2].endswith(" 1 |")
    assert "| 2 | 2.00 | interp | 2.00 | " in table


def test_pooled_rows_pair_each_track_of_each_evaluation(tmp_path):
    """Two evaluations (e.g. two seeds) with their own labels and the same track names: pooled,
    each (track, evaluation) is a unit of its own, so the same track twice counts twice."""
    first = [
        row("joint_s2", 1, 1.0, "a", mel_distance=1.0),
        row("dual_s2", 1, 1.0, "a", mel_distance=3.0),
    ]
    second = [
        row("joint_wide", 1, 1.0, "a", mel_distance=2.0),
        row("dual_mono", 1, 1.0, "a", mel_distance=2.5),
        row("opus", 1, 1.0, "a", mel_distance=9.0),
    ]
    paths = []
    for i, rows in enumerate((first, second)):
        paths.append(tmp_path / f"results{i}.json")
        paths[-1].write_text(jvd.json.dumps(rows))
    specs = [f"{paths[0]}=joint_s2,dual_s2", f"{paths[1]}=joint_wide,dual_mono"]
    pooled = jvd.pooled_rows(specs)
    assert {r["codec"] for r in pooled} == {"joint", "dual"} and len(pooled) == 4
    mel = jvd.paired(pooled, "joint", "dual")[0]["metrics"]["mel_distance"]
    assert mel["files"] == 2 and mel["mean_diff"] == pytest.approx((-2.0 - 0.5) / 2)
    with pytest.raises(SystemExit, match="no rows of \\['dual_s3'\\]"):
        jvd.pooled_rows([f"{paths[0]}=joint_s2,dual_s3"])
    with pytest.raises(SystemExit, match="is not RESULTS_JSON=JOINT_LABEL,OTHER_LABEL"):
        jvd.pooled_rows([str(paths[0])])


@pytest.mark.parametrize("resume", [False, True])
def test_resume_continues_a_shorter_run_and_retrain_starts_over(tmp_path, monkeypatch, resume):
    """`--resume` keeps a run that stopped short of --steps (the train command resumes it);
    without it the run is trained again from scratch; `--reuse` keeps one that got there."""
    run = tmp_path / "joint_wide_qd25"
    (run / "checkpoints" / "1000").mkdir(parents=True)
    (run / "checkpoints" / "2000").mkdir()
    (run / "metrics.jsonl").write_text("old\n")
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return jvd.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(jvd.subprocess, "run", fake_run)
    args = jvd.argparse.Namespace(
        workdir=str(tmp_path),
        steps=4000,
        reuse=True,
        resume=resume,
        config="c",
        train_dir="t",
        heldout_dir="h",
        seed=2,
    )
    assert jvd.last_checkpoint(str(run)) == 2000
    jvd.train("joint_wide_qd25", args)
    assert len(calls) == 1 and "--config.train.num_steps=4000" in calls[0]
    assert (run / "metrics.jsonl").exists() == resume
    (run / "checkpoints" / "4000").mkdir(parents=True, exist_ok=True)
    assert jvd.train("joint_wide_qd25", args)["command"] == "(reused)" and len(calls) == 1
    assert jvd.last_checkpoint(str(tmp_path / "none")) == 0


def test_jobs_train_models_at_once_each_on_its_own_cpus(tmp_path, monkeypatch):
    """`--jobs 2` runs two trainings at the same time (the fake one waits for the other: one
    after the other would time out), each pinned to its own half of the CPUs."""
    import threading

    barrier = threading.Barrier(2, timeout=10)
    pins = []

    def fake_run(cmd, preexec_fn=None, **kw):
        pins.append(preexec_fn)
        barrier.wait()
        return jvd.subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(jvd.subprocess, "run", fake_run)
    monkeypatch.setattr(jvd.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    args = jvd.argparse.Namespace(
        workdir=str(tmp_path), steps=10, reuse=False, resume=False, config="c",
        train_dir="t", heldout_dir="h", seed=0, jobs=2,
    )  # fmt: skip
    runs = jvd.train_all(["preset", "dual_mono_preset"], args)
    assert sorted(runs) == ["dual_mono_preset", "preset"]
    assert sorted(r["cpus"] for r in runs.values()) == [[0, 2], [1, 3]]
    assert all(callable(p) for p in pins) and len(pins) == 2
    assert jvd.cpu_groups(1) == [None]
    with pytest.raises(SystemExit, match="--jobs=5: .* 4 CPUs"):
        jvd.cpu_groups(5)


def test_run_label_is_the_evaluated_checkpoints_name(tmp_path):
    """A resumed run keeps its first name in config.json; its new checkpoint has the new one,
    which is the evaluation's row label."""
    (tmp_path / "checkpoints" / "4000" / "config").mkdir(parents=True)
    (tmp_path / "config.json").write_text(jvd.json.dumps({"name": "old"}))
    assert jvd.run_label(str(tmp_path), "arg", 4000) == "old"
    meta = tmp_path / "checkpoints" / "4000" / "config" / "metadata"
    meta.write_text(jvd.json.dumps({"config": {"name": "new"}}))
    assert jvd.run_label(str(tmp_path), "arg", 4000) == "new"
    assert jvd.run_label(str(tmp_path), "arg") == "old"
    assert jvd.run_label(str(tmp_path / "missing"), "arg", 4000) == "arg"


def test_every_model_is_a_valid_override_of_the_preset():
    """A typo in a model's overrides would otherwise surface only after the runs before it."""
    from jax_codec.config import apply_overrides, get_config
    from jax_codec.data.augment import check_config

    root = os.path.dirname(os.path.dirname(__file__))
    for name, flags in jvd.MODELS.items():
        config = get_config(os.path.join(root, "configs", "music48.py") + ":runlocal")
        overrides = {}
        for flag in flags:
            key, _, value = flag.removeprefix("--config.").partition("=")
            assert flag.startswith("--config.") and value, (name, flag)
            overrides[key] = value
        apply_overrides(config, overrides)  # unknown keys and invalid models raise
        assert check_config(config.data.augment) is None, name
        # Each trains what its results were measured on: the ablations of the preset's DAC
        # quantizer keep it, whatever the preset's quantizer is now.
        expect = "plain" if "plain" in name or "preset" in name else "factorized"
        assert config.model.quantizer == expect, name
        if name in ("joint", "joint_qd25_seg1_mh8"):
            assert config.loss.codebook_weight == 1.0 and config.train.codebook_ema_decay == 0
            assert config.model.codebook_dim == 8
        if name == "joint":
            assert config.model.quantizer_dropout == 0.5
            assert config.train.dead_code_min_hits == 0
        if name == "joint_qd25_seg1_mh8":
            assert config.model.quantizer_dropout == 0.25
            assert config.train.dead_code_min_hits == 8
        if name == "joint_plain":  # EnCodec's quantizer with the codebook loss, not the update
            assert config.loss.codebook_weight == 1.0 and config.train.codebook_ema_decay == 0
    assert jvd.MODELS["preset"] == []
    wide = get_config(os.path.join(root, "configs", "music48.py") + ":runlocal")
    apply_overrides(
        wide, dict(f.removeprefix("--config.").split("=") for f in jvd.MODELS["preset_wide"])
    )
    assert (wide.model.encoder_width, wide.model.decoder_width) == (12, 128)
    assert wide.model.quantizer == "plain" and wide.train.codebook_ema_decay == 0.9


def test_models_before_quiet_spans_keep_their_recipe():
    from jax_codec.config import apply_overrides, get_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def config_of(name):
        config = get_config(os.path.join(root, "configs", "music48.py") + ":runlocal")
        flags = dict(f.removeprefix("--config.").split("=", 1) for f in jvd.MODELS[name])
        apply_overrides(config, flags)
        return config.data.augment

    assert config_of("preset").gap_prob == 0.25 and config_of("preset").gap_depth_db == -40
    assert config_of("dual_mono_preset").gap_prob == 0.25
    for name in ("preset_nogap", "dual_mono_preset_nogap", "preset_mono20", "joint"):
        assert config_of(name).gap_prob == 0.0, name
    assert config_of("joint_wide_qd25_gap40").gap_prob == 0.25
