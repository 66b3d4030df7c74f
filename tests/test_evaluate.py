"""`python -m jax_codec.evaluate`: end to end on generated music with a runlocal checkpoint and
the Opus baseline, determinism, `--compare`, clean errors, and the plotting functions.

Everything runs in-process through `jax_codec.evaluation.__main__.main` (one set of compiled
functions for the module), on a `best/` export of random runlocal weights (decoders made louder,
as in test_compress, so the output is not near silence), with windows of 64 frames.
"""

import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import louder

from jax_codec import bitstream, levels
from jax_codec.data.synthetic import render_song
from jax_codec.evaluation import __main__ as ev
from jax_codec.evaluation import baselines, plots, report, run, stats

CONFIG = "configs/base.py:runlocal"
WINDOW = ["--window_frames", "64"]
FAST_METRICS = "mel_distance,si_sdr,loudness_difference"


def _ffmpeg():
    try:
        return baselines.ffmpeg_path()
    except baselines.FFmpegNotFoundError:
        return None


HAVE_FFMPEG = _ffmpeg() is not None
NO_FFMPEG = (
    "no ffmpeg (apt-get install ffmpeg, or pip install imageio-ffmpeg): Opus baseline skipped"
)


def export(workdir, config, params):
    from jax_codec.training.loop import BestExporter

    BestExporter(str(workdir)).maybe_export(0, 1.0, params, config)
    return str(workdir)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Two `best/` exports: ours (config name base_runlocal) and another one (other_model)."""
    import jax

    from jax_codec.config import load_config
    from jax_codec.inference.api import load_codec

    config = load_config(CONFIG)
    _, params, _ = load_codec(config=config, seed=0)
    params = louder(params)
    ours = export(tmp_path_factory.mktemp("ours"), config, params)
    other_config = load_config(CONFIG)
    other_config.name = "other_model"
    other_params = jax.tree.map(lambda v: v * 1.01, params)
    other = export(tmp_path_factory.mktemp("other"), other_config, other_params)
    return ours, other


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder with a mono FLAC at the model rate, a stereo WAV at 48 kHz in a subfolder, and a
    text file that is not audio."""
    root = tmp_path_factory.mktemp("music")
    (root / "sub").mkdir()
    sf.write(str(root / "a.flac"), render_song(2.5, 0, 44100, 1), 44100)
    sf.write(str(root / "sub" / "b.wav"), render_song(2.0, 1, 48000, 2), 48000)
    (root / "notes.txt").write_text("not audio")
    return str(root)


def evaluate(capsys, *argv):
    capsys.readouterr()
    try:
        rc = ev.main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def first_run(ckpts, data, tmp_path_factory):
    """The command with n_quantizers 1,4 and Opus (when ffmpeg is there), all default metrics."""
    out = str(tmp_path_factory.mktemp("eval") / "run1")
    argv = ["--checkpoint", ckpts[0], "--data", data, "--n_quantizers", "1,4", "--output", out]
    argv += ["--baselines", "opus" if HAVE_FFMPEG else "none", *WINDOW]
    rc = ev.main(argv)
    assert rc == 0
    return out, argv


def test_end_to_end_outputs(first_run, ckpts, capsys):
    out, _ = first_run
    names = set(os.listdir(out))
    for f in ("results.csv", "results.json", "summary.md", "summary.json"):
        assert f in names
    metric_names = ev.select_metrics(None, False)
    assert {f"rd_{m}.png" for m in metric_names} <= names
    assert {"spectrogram_0_a.png", "spectrogram_1_sub_b.png", "codes_base_runlocal.png"} <= names

    rows = read_csv(os.path.join(out, "results.csv"))
    codecs = ["base_runlocal"] + (["opus"] if HAVE_FFMPEG else [])
    assert len(rows) == 2 * 2 * len(codecs)  # files x settings x codecs
    header = list(rows[0])
    assert header[: len(report.ROW_FIELDS)] == list(report.ROW_FIELDS)
    assert set(metric_names) <= set(header)
    assert {"code_usage_l0", "code_entropy_bits_l3", "code_perplexity_l3"} <= set(header)
    assert [(r["file"], r["codec"], r["n_quantizers"]) for r in rows] == [
        (f, c, k) for f in ("a.flac", "sub/b.wav") for k in ("1", "4") for c in codecs
    ]
    for r in rows:
        assert r["sample_rate"] == "44100" and r["error"] == ""
        assert r["channels"] == ("1" if r["file"] == "a.flac" else "2")
        assert math.isfinite(float(r["mel_distance"])) and float(r["actual_kbps"]) > 0
    # The report says which weights it scored.
    md = open(os.path.join(out, "summary.md")).read()
    assert f"(checkpoint `{ckpts[0]}`)" in md and "random init" not in md
    ours = [r for r in rows if r["codec"] == "base_runlocal"]
    for r in ours:
        assert r["kind"] == "ours" and r["entropy_coded"] == "false"
        size, seconds = int(r["size_bytes"]), float(r["duration_s"])
        assert float(r["actual_kbps"]) == pytest.approx(size * 8 / seconds / 1000, rel=1e-12)
        usage = float(r["code_usage_l0"])
        assert 0 < usage <= 1 and (r["code_usage_l3"] != "") == (r["n_quantizers"] == "4")
    assert float(ours[1]["actual_kbps"]) > float(ours[0]["actual_kbps"])  # 4 levels cost more

    with open(os.path.join(out, "results.json")) as f:
        js = json.load(f)
    assert len(js) == len(rows) and js[0]["codec"] == "base_runlocal"
    assert js[0]["size_bytes"] == int(rows[0]["size_bytes"])

    md = open(os.path.join(out, "summary.md")).read()
    assert "| codec | n_q | kbps | n | mean | 95% CI (±) |" in md
    assert "## mel_distance (lower is better)" in md and "## visqol (higher is better)" in md
    assert "## Code usage: base_runlocal" in md
    # Two files: every group has n = 2 and a finite interval.
    line = next(
        x for x in md.splitlines() if x.startswith("| base_runlocal | 1 |") and "| 2 |" in x
    )
    assert line.split("|")[-2].strip() not in ("", "–")
    summary = json.load(open(os.path.join(out, "summary.json")))
    group = summary["summary"][0]
    assert group["codec"] == "base_runlocal" and group["metrics"]["mel_distance"]["n"] == 2
    kbps = [float(r["actual_kbps"]) for r in ours if r["n_quantizers"] == "1"]
    assert group["kbps"] == pytest.approx(np.mean(kbps))

    from PIL import Image

    for name in names:
        if name.endswith(".png"):
            with open(os.path.join(out, name), "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
            with Image.open(os.path.join(out, name)) as im:
                im.verify()
                assert im.size[0] > 200 and im.size[1] > 200


def test_bitrate_matches_the_compress_command(first_run, ckpts, data, tmp_path, capsys):
    """Our rows' bytes are what `python -m jax_codec compress` writes for the same audio."""
    from jax_codec import bitstream
    from jax_codec.__main__ import main as jax_codec_main

    rows = read_csv(os.path.join(first_run[0], "results.csv"))
    for k in ("1", "4"):
        row = next(
            r for r in rows if r["file"] == "a.flac" and r["codec"] == "base_runlocal"
            and r["n_quantizers"] == k
        )  # fmt: skip
        jc = str(tmp_path / f"a{k}.jcodec")
        argv = ["compress", os.path.join(data, "a.flac"), jc, "--checkpoint", ckpts[0]]
        assert jax_codec_main(argv + ["--n_quantizers", k, *WINDOW]) == 0
        assert os.path.getsize(jc) == int(row["size_bytes"])
        facts = bitstream.info(jc)
        assert facts["actual_kbps"] == pytest.approx(float(row["actual_kbps"]), rel=1e-9)
        assert facts["nominal_kbps"] == pytest.approx(float(row["nominal_kbps"]), rel=1e-12)


def test_opus_is_matched_to_our_bitrate(first_run):
    if not HAVE_FFMPEG:
        pytest.skip(NO_FFMPEG)
    rows = read_csv(os.path.join(first_run[0], "results.csv"))
    ours = {(r["file"], r["n_quantizers"]): r for r in rows if r["codec"] == "base_runlocal"}
    opus = [r for r in rows if r["codec"] == "opus"]
    assert len(opus) == 4
    for r in opus:
        target = float(ours[(r["file"], r["n_quantizers"])]["actual_kbps"])
        assert r["kind"] == "baseline" and float(r["target_kbps"]) == pytest.approx(target)
        assert float(r["encoder_kbps"]) == pytest.approx(max(target, 0.5))
        assert float(r["actual_kbps"]) > 1.0 and r["codec_sample_rate"] == "48000"
        assert float(r["actual_kbps"]) == pytest.approx(
            int(r["size_bytes"]) * 8 / float(r["duration_s"]) / 1000
        )
        assert -60 < float(r["si_sdr"]) < 60 and r["code_usage_l0"] == ""


@pytest.mark.slow  # a second full evaluation run
def test_same_inputs_same_numbers(first_run, tmp_path, capsys):
    out, argv = first_run
    again = str(tmp_path / "run2")
    argv = list(argv)
    argv[argv.index("--output") + 1] = again
    rc, stdout, err = evaluate(capsys, *argv)
    assert rc == 0, err
    for name in ("results.csv", "results.json", "summary.md"):
        with open(os.path.join(out, name), "rb") as a, open(os.path.join(again, name), "rb") as b:
            assert a.read() == b.read(), name
    assert "| codec | n_q | kbps |" in stdout and f"wrote {again}" in stdout


def test_compare_adds_rows(ckpts, data, tmp_path, capsys):
    out = str(tmp_path / "cmp")
    rc, stdout, err = evaluate(
        capsys, "--checkpoint", ckpts[0], "--data", data, "--compare", ckpts[1],
        "--n_quantizers", "2", "--baselines", "none", "--metrics", FAST_METRICS,
        "--max_files", "1", "--spectrograms", "1", "--output", out, *WINDOW,
    )  # fmt: skip
    assert rc == 0, err
    rows = read_csv(os.path.join(out, "results.csv"))
    assert [(r["file"], r["codec"], r["kind"], r["n_quantizers"]) for r in rows] == [
        ("a.flac", "base_runlocal", "ours", "2"),
        ("a.flac", "other_model", "neural", "2"),
    ]
    assert rows[0]["mel_distance"] != rows[1]["mel_distance"]  # other weights, other numbers
    assert list(rows[0])[-3:] == ["code_usage_l1", "code_entropy_bits_l1", "code_perplexity_l1"]
    md = open(os.path.join(out, "summary.md")).read()
    assert "| other_model | 2 |" in md and "neural codecs compared: `other_model`" in md
    assert "| – |" in md  # one file: no interval
    names = os.listdir(out)
    assert "codes_other_model.png" in names and "spectrogram_0_a.png" in names
    assert "rd_mel_distance.png" in names and "rd_visqol.png" not in names


def test_excerpts_spread_over_the_file(ckpts, data, tmp_path, capsys):
    """`--excerpts 3`: three windows of one file, from its start to its end, each a row; the
    summary counts the file once (n = 1) with the mean of its excerpts."""
    out = str(tmp_path / "ex")
    rc, _, err = evaluate(
        capsys, "--checkpoint", ckpts[0], "--data", data, "--n_quantizers", "1",
        "--baselines", "none", "--metrics", FAST_METRICS, "--max_files", "1",
        "--segment_seconds", "0.6", "--excerpts", "3", "--spectrograms", "0",
        "--output", out, *WINDOW,
    )  # fmt: skip
    assert rc == 0, err
    rows = read_csv(os.path.join(out, "results.csv"))
    # a.flac: 2.5 s at 44.1 kHz, the model's rate; windows of 0.6 s.
    starts = [float(r["excerpt_start_s"]) for r in rows]
    assert [r["file"] for r in rows] == ["a.flac"] * 3
    assert starts == pytest.approx([0.0, 0.95, 1.9], abs=1e-4)
    assert all(float(r["duration_s"]) == pytest.approx(0.6, abs=1e-4) for r in rows)
    assert len({r["mel_distance"] for r in rows}) == 3  # other audio, other numbers
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["run"]["excerpts"] == 3 and summary["run"]["seconds"] == pytest.approx(1.8)
    group = summary["summary"][0]
    assert (group["files"], group["excerpts"]) == (1, 3)
    mel = group["metrics"]["mel_distance"]
    assert mel["n"] == 1 and mel["ci95"] is None  # one file: no interval
    assert mel["mean"] == pytest.approx(np.mean([float(r["mel_distance"]) for r in rows]))
    md = open(os.path.join(out, "summary.md")).read()
    assert "up to 3 excerpts of 0.6 s of each, evenly spread" in md


def test_excerpt_windows_and_reading(data):
    assert run.excerpt_starts(100, 10, 1) == [0]
    assert run.excerpt_starts(100, 10, 4) == [0, 30, 60, 90]
    assert run.excerpt_starts(10, 10, 4) == [0]  # no longer than one window: one excerpt
    assert run.excerpt_starts(12, 10, 4) == [0, 1, 2]  # overlapping, no repeats
    whole = run.load_segment(os.path.join(data, "a.flac"), 44100, 0)
    part = run.load_segment(os.path.join(data, "a.flac"), 44100, 0.5, start=1000)
    assert part.shape == (1, 22050)
    np.testing.assert_allclose(part, whole[:, 1000:23050], atol=1e-6)


def test_random_init_and_default_output(data, tmp_path, capsys, monkeypatch):
    config = os.path.abspath("configs/base.py") + ":runlocal"
    monkeypatch.chdir(tmp_path)
    rc, _, err = evaluate(
        capsys, "--config", config, "--random_init", "--data", os.path.join(data, "a.flac"),
        "--n_quantizers", "1", "--baselines", "none", "--metrics", "mel_distance",
        "--spectrograms", "0", *WINDOW,
    )  # fmt: skip
    assert rc == 0, err
    rows = read_csv(tmp_path / "eval" / "base_runlocal" / "results.csv")
    assert [(r["file"], r["codec"]) for r in rows] == [("a.flac", "base_runlocal")]
    md = (tmp_path / "eval" / "base_runlocal" / "summary.md").read_text()
    assert f"random init of `{config}`, seed 0" in md


def assert_one_line_error(rc, err, match):
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and match in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,match",
    [
        ([], "--data PATH is required"),
        (["--data", "{tmp}/missing"], "no such file or directory"),
        (["--data", "{tmp}/empty"], "no audio files found"),
        (["--data", "{data}", "--n_quantizers", "1,x"], "comma-separated list of positive"),
        (["--data", "{data}", "--n_quantizers", "0"], "comma-separated list of positive"),
        (["--data", "{data}", "--baselines", "opus,flac"], "unknown codec(s) flac"),
        (["--data", "{data}", "--metrics", "mel_distance,nope"], "unknown metric(s) nope"),
        (["--data", "{data}", "--segment_seconds", "0.1"], "--segment_seconds must be"),
        (["--data", "{data}", "--compare", "{tmp}/missing"], "no such checkpoint"),
        (["--data", "{data}", "--excerpts", "0"], "--excerpts must be at least 1"),
        (["--data", "{data}", "--excerpts", "3", "--segment_seconds", "0"], "needs --segment"),
        (["--data", "{data}", "--n_quantizers", "1,8"], "the model has 4 quantizers"),
        (["--data", "{data}", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_errors_are_one_line_exit_2(ckpts, data, tmp_path, capsys, args, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no audio here")
    argv = [a.format(tmp=tmp_path, data=data) for a in args]
    rc, _, err = evaluate(capsys, "--checkpoint", ckpts[0], "--baselines", "none", *argv)
    assert_one_line_error(rc, err, match)


def test_missing_ffmpeg_says_how_to_install(ckpts, data, capsys, monkeypatch):
    def missing():
        raise baselines.FFmpegNotFoundError(
            f"ffmpeg was not found on PATH nor via imageio-ffmpeg: {baselines.INSTALL_HINT}"
        )

    monkeypatch.setattr(baselines, "ffmpeg_path", missing)
    rc, _, err = evaluate(capsys, "--checkpoint", ckpts[0], "--data", data)
    assert_one_line_error(rc, err, "apt-get install ffmpeg")
    assert "pip install imageio-ffmpeg" in err and "--baselines opus,mp3" in err


def test_module_entry_point_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "jax_codec.evaluate", "--config", CONFIG, "--random_init",
         "--data", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("error: --data "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


# --------------------------------------------------------------------------- pieces


def test_ladder_and_argument_parsing():
    assert ev.default_ladder(1) == [1]
    assert ev.default_ladder(4) == [1, 2, 4]
    assert ev.default_ladder(8) == [1, 2, 4, 8]
    assert ev.default_ladder(9) == [1, 2, 4, 8, 9]
    assert ev.parse_n_quantizers("4, 1,2,4") == [1, 2, 4]
    assert ev.parse_n_quantizers(None) is None
    assert ev.parse_baselines(None) == ["opus", "mp3"]
    assert ev.parse_baselines("none") == []
    assert ev.parse_baselines("AAC,vorbis,aac") == ["aac", "vorbis"]
    assert "pesq_wb_speech" not in ev.select_metrics(None, False)
    assert ev.select_metrics("si_sdr", False) == ["si_sdr"]


def test_mean_ci_and_summary():
    n, mean, half = stats.mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert (n, mean) == (3, 2.0)
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))  # t(0.975, 2) * s / sqrt(n)
    assert stats.mean_ci([5.0])[:2] == (1, 5.0) and math.isnan(stats.mean_ci([5.0])[2])
    assert stats.mean_ci([])[0] == 0
    rows = [
        {"codec": "ours", "kind": "ours", "n_quantizers": 2, "actual_kbps": 2.0, "m": 1.0},
        {"codec": "opus", "kind": "baseline", "n_quantizers": 1, "actual_kbps": 6.0, "m": 3.0},
        {"codec": "ours", "kind": "ours", "n_quantizers": 1, "actual_kbps": 1.0, "m": 2.0},
        {"codec": "ours", "kind": "ours", "n_quantizers": 1, "actual_kbps": 3.0, "m": 4.0},
    ]
    s = stats.summarize(rows, ["m"])
    assert [(g["codec"], g["n_quantizers"]) for g in s] == [("ours", 1), ("opus", 1), ("ours", 2)]
    assert s[0]["kbps"] == 2.0 and s[0]["metrics"]["m"]["mean"] == 3.0
    assert s[0]["metrics"]["m"]["ci95"] == pytest.approx(12.706204736)  # t(0.975, 1) * s / sqrt(2)
    # Rows of one file (its excerpts) count once, as their mean.
    excerpts = [
        {"file": f, "codec": "ours", "kind": "ours", "n_quantizers": 1, "actual_kbps": 1.0, "m": m}
        for f, m in (("a", 1.0), ("a", 3.0), ("b", 6.0))
    ]
    (g,) = stats.summarize(excerpts, ["m"])
    assert (g["files"], g["excerpts"], g["metrics"]["m"]["n"]) == (2, 3, 2)
    assert g["metrics"]["m"]["mean"] == 4.0  # (mean(1, 3) + 6) / 2, not (1 + 3 + 6) / 3
    assert plots.rd_points(excerpts, "m")["ours"] == [(1.0, 4.0, g["metrics"]["m"]["ci95"], 2)]
    table = report.format_metric_table(s, "m")
    assert table.splitlines()[0] == "| codec | n_q | kbps | n | mean | 95% CI (±) |"
    assert "| opus | 1 | 6 | 1 | 3 | – |" in table


def test_plots(tmp_path):
    from matplotlib.figure import Figure

    sr = 16000
    t = np.arange(sr) / sr
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    noisy = x + 0.01 * np.random.default_rng(0).standard_normal(sr)
    fig = plots.spectrogram_comparison({"original": x, "noisy": np.stack([noisy, noisy])}, sr)
    assert isinstance(fig, Figure) and [a.get_title(loc="left") for a in fig.axes[:2]] == [
        "original",
        "noisy",
    ]
    spec, frames = plots.log_spectrogram(x, 512, 128)
    peak_bin = int(np.argmax(spec[:, frames // 2]))
    assert abs(peak_bin * sr / 512 - 440) < sr / 512  # the tone is where it should be
    assert spec.max() == pytest.approx(20 * np.log10(0.5), abs=1.0)
    path = plots.save(fig, tmp_path / "sub" / "spec.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    image = plots.to_image(fig)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3

    counts = [np.bincount([0, 0, 1, 3], minlength=8), np.zeros(8, int), np.ones(8, int)]
    fig = plots.codebook_usage(counts, title="codes")
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(visible) == 3
    assert "3/8 used" in visible[0].get_title() and "H=1.50/3 bits" in visible[0].get_title()
    assert "no codes" in visible[1].get_title() and "8/8 used" in visible[2].get_title()
    plots.save(fig, tmp_path / "codes.png")
    with pytest.raises(ValueError):
        plots.spectrogram_comparison({}, sr)

    rows = [
        {"codec": "ours", "n_quantizers": 1, "actual_kbps": 1.0, "mel": 2.0},
        {"codec": "ours", "n_quantizers": 1, "actual_kbps": 3.0, "mel": 4.0},
        {"codec": "ours", "n_quantizers": 2, "actual_kbps": 4.0, "mel": 1.0},
        {"codec": "opus", "n_quantizers": 1, "actual_kbps": 6.0, "mel": 1.5},
        {"codec": "opus", "n_quantizers": 2, "actual_kbps": float("nan"), "mel": None},
    ]
    pts = plots.rd_points(rows, "mel")
    assert pts["ours"][0][:2] == (2.0, 3.0) and pts["ours"][0][3] == 2
    assert pts["ours"][1][:2] == (4.0, 1.0) and math.isnan(pts["ours"][1][2])
    assert [p[:2] for p in pts["opus"]] == [(6.0, 1.5)]
    fig = plots.rate_distortion(rows, "mel", higher_is_better=False)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours", "opus"]
    assert "lower is better" in ax.get_ylabel() and ax.get_xscale() == "log"
    assert plots.save(fig, tmp_path / "rd.png").endswith("rd.png")
    empty = plots.rate_distortion([], "mel", higher_is_better=True)
    assert "higher is better" in empty.axes[0].get_ylabel()


def test_package_import_is_light():
    code = (
        "import sys, jax_codec.evaluation as e; "
        "assert 'jax' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy'; "
        "assert callable(e.mean_ci) and callable(e.round_trip); "
        "assert 'jax' not in sys.modules, 'run imports jax'; print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_round_trip_keeps_level_and_alignment(ckpts, tmp_path):
    """The evaluated signal is the model's own output: no gain, no delay, no lost samples.

    For a file at another rate than the model's (a 22.05 kHz MP3, as in real collections) the
    .jcodec round trip equals the forward pass of the resampled input, resampled back, so
    level and timing errors can only come from the model.
    """
    rate = 22050
    import argparse

    import jax.numpy as jnp

    from jax_codec.evaluation import metrics

    args = argparse.Namespace(
        checkpoint=ckpts[0],
        which="best",
        config=None,
        random_init=False,
        seed=0,
        entropy="off",
        n_quantizers="4",
    )
    nc = ev.load_model(args, ckpts[0], "ours", set(), [])
    x = render_song(2.0, 3, rate, 1).reshape(1, -1)
    y, facts, _ = run.neural_round_trip(nc, x, rate, 4, str(tmp_path / "a.jcodec"), 64)
    assert y.shape == x.shape
    codec, params = nc.codec, nc.loaded.params
    xm = run._resample(x, rate, codec.sample_rate)
    # The model sees the input at its training level; the header gain restores the input's.
    target = levels.target_db(nc.loaded.config)
    g_in = levels.normalizing_gain(levels.level_db(x, rate), float(np.abs(x).max()), target)
    xn = xm * np.float32(levels.db_to_gain(g_in))
    gain = bitstream.read_file(str(tmp_path / "a.jcodec"))[0].gain
    out = codec.apply(params, jnp.asarray(xn[..., None]), 4).audio[..., 0]
    direct = np.asarray(out) * gain
    direct = run._resample(direct, codec.sample_rate, rate, x.shape[1])
    np.testing.assert_allclose(y, direct, atol=2e-4)
    assert metrics.loudness_difference(x, y, rate) < 0.05
    # And the metrics see exactly that signal: the same SI-SDR and loudness.
    assert metrics.si_sdr(x, y) == pytest.approx(metrics.si_sdr(x, direct), abs=0.05)
    assert metrics.loudness_difference(x, y, rate) == pytest.approx(
        metrics.loudness_difference(x, direct, rate), abs=0.05
    )
