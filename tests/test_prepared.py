"""The `prepared:PATH` source: writer, reader, CLI, and training on it."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from jax_codec.config import ConfigError, apply_overrides, load_config
from jax_codec.data import audio, pipeline
from jax_codec.data import prepared as prep
from jax_codec.data.prepared import PreparedClips, write_prepared

SR = 16000
LSB = 1 / 32768


def tone(freq, seconds, sr, channels=1, seed=0):
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t)[:, None] * np.linspace(1, 0.5, channels)
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(x.shape)).astype(np.float32)


# Good files: (relative path, rate, channels, seconds). Same-rate 16-bit files round-trip exactly.
GOOD = [
    ("a.wav", SR, 1, 2.3),
    ("b.flac", 22050, 2, 1.7),  # resampled and mixed down
    ("sub/c.wav", SR, 2, 1.1),
]
BAD = ["corrupt.flac", "empty.wav", "silent.wav"]


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    for i, (rel, sr, ch, sec) in enumerate(GOOD):
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        sf.write(str(root / rel), tone(200 + 70 * i, sec, sr, ch, seed=i), sr, subtype="PCM_16")
    (root / "corrupt.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "empty.wav").write_bytes(b"")
    sf.write(str(root / "silent.wav"), np.zeros((SR, 1), np.float32), SR)
    (root / "notes.txt").write_text("not audio")
    return str(root)


def prepare(music, out, channels=1, **kw):
    kw = {"chunk_seconds": 0.5, "shard_seconds": 1.2, "workers": 2} | kw
    return write_prepared(music, str(out), SR, channels, **kw)


@pytest.fixture(scope="module")
def mono(music, tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "mono"
    prepare(music, out)
    return str(out)


def expected(music, rel, channels):
    """The source file at SR with `channels`, int16-quantized as the writer stores it."""
    x = audio.read_file(os.path.join(music, rel), SR, channels)
    return prep.quantize(x)[0].astype(np.float32) / 32768


def windows(frames, chunk):
    """Windows inside records, across record (and shard) boundaries, at and past the end."""
    yield 0, 100
    for b in range(chunk, frames, chunk):
        yield b - 37, 100
        yield b - 1, 2
    yield 10, frames + 500  # the whole clip in one read
    yield frames - 50, 200  # short at the end
    yield frames + 10, 100  # past the end: empty


@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip(music, tmp_path, channels):
    m = prepare(music, tmp_path / "p", channels=channels)
    assert len(m["shards"]) > 2 and all(s["records"] for s in m["shards"])
    clips = PreparedClips(str(tmp_path / "p"), SR, channels)
    assert [clips.source_path(i) for i in range(len(clips))] == ["a.wav", "b.flac", "sub/c.wav"]
    chunk = m["chunk_frames"]
    for i, (rel, sr, ch, _) in enumerate(GOOD):
        want = expected(music, rel, channels)
        assert clips.frames(i) == len(want) == m["clips"][i]["frames"]
        if sr == SR and (ch == channels or channels == 2):  # 16-bit at the rate: bit-exact
            src = sf.read(os.path.join(music, rel), dtype="float32", always_2d=True)[0]
            np.testing.assert_array_equal(want, audio.convert_channels(src, channels))
        for start, length in windows(len(want), chunk):
            x = clips.read(i, start, length)
            assert x.dtype == np.float32 and x.shape[1] == channels
            ref = want[start : start + length]
            assert x.shape == ref.shape, (rel, start, length)
            # Resampling chunk by chunk may round a sample the other way: at most 1 LSB.
            tol = 0 if sr == SR else LSB * 1.01
            np.testing.assert_allclose(x, ref, rtol=0, atol=tol, err_msg=f"{rel} @ {start}")
    assert np.array_equal(clips.all_frames(), [c["frames"] for c in m["clips"]])


def test_manifest_and_skip_report(music, mono):
    m = json.load(open(os.path.join(mono, "manifest.json")))
    assert m["format"] == "jax_codec.prepared" and m["version"] == 1
    assert (m["sample_rate"], m["channels"], m["dtype"]) == (SR, 1, "int16")
    files = sorted(f for f in os.listdir(mono) if f.endswith(".array_record"))
    n = len(files)
    assert files == [f"data-{k:05d}-of-{n:05d}.array_record" for k in range(n)]
    assert [s["file"] for s in m["shards"]] == files
    assert all(s["frames"] <= 1.2 * SR for s in m["shards"])
    assert all(r[2] <= 0.5 * SR for s in m["shards"] for r in s["records"])
    skipped = {p: reason for reason, ps in m["report"]["skipped"].items() for p in ps}
    assert sorted(skipped) == sorted(BAD) and skipped["silent.wav"].startswith("all-silent")
    assert m["report"]["ignored"] == 1 and m["report"]["used"] == 3
    assert m["seconds"] == pytest.approx(sum(s for *_, s in GOOD), abs=1e-3)
    report = PreparedClips(mono, SR, 1).report
    assert report.num_skipped == 3 and report.used == 3 and "SKIPPED 3" in report.summary()


def test_read_time_conversion_and_pickle(mono):
    clips = PreparedClips(mono, SR, 2)
    x = clips.read(0, 1000, 500)
    assert x.shape == (500, 2) and np.array_equal(x[:, 0], x[:, 1])
    # Another rate: windows are those samples of the whole stored clip, resampled.
    low = PreparedClips(mono, 8000, 1)
    stored = PreparedClips(mono, SR, 1).read(0, 0, 10**6)
    whole = audio.resample(stored, SR, 8000)
    assert low.frames(0) == len(whole)
    for start in (0, 3000, 7990, low.frames(0) - 30):
        np.testing.assert_allclose(low.read(0, start, 300), whole[start : start + 300], atol=1e-3)
    assert "resampled while reading" in low.report.summary()
    clips.read(2, 0, 10)  # a reader is open; pickling drops it and the copy reopens
    copy = pickle.loads(pickle.dumps(clips))
    np.testing.assert_array_equal(copy.read(0, 1000, 500), x)


def test_deterministic(music, mono, tmp_path):
    prepare(music, tmp_path / "again")
    names = sorted(os.listdir(mono))
    assert names == sorted(os.listdir(tmp_path / "again"))
    for name in names:
        a = open(os.path.join(mono, name), "rb").read()
        assert a == open(tmp_path / "again" / name, "rb").read(), name


def test_failure_leaves_no_output(music, tmp_path, monkeypatch):
    calls = []

    def failing(x):
        calls.append(1)
        if len(calls) == 4:
            raise OSError("disk full")
        return real(x)

    real = prep.quantize
    monkeypatch.setattr(prep, "quantize", failing)
    with pytest.raises(OSError, match="disk full"):
        prepare(music, tmp_path / "out")
    assert os.listdir(tmp_path) == []  # neither the output nor its .tmp- folder


def test_file_failing_while_decoding_is_skipped(music, tmp_path, monkeypatch):
    real = prep.FolderClips.read

    def read(self, i, start, length):
        if self.path(i).endswith("b.flac") and start > 0:
            raise audio.BadAudio("corrupt (decoding failed)", "truncated")
        return real(self, i, start, length)

    monkeypatch.setattr(prep.FolderClips, "read", read)
    m = prepare(music, tmp_path / "p")
    assert [c["path"] for c in m["clips"]] == ["a.wav", "sub/c.wav"]
    assert m["report"]["skipped"]["corrupt (decoding failed)"] == ["b.flac"]
    clips = PreparedClips(str(tmp_path / "p"), SR, 1)
    assert len(clips) == 2 and clips.read(1, 0, 10).shape == (10, 1)


def test_overwrite(music, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    prepare(music, out)  # an empty folder is fine
    (out / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare(music, out)
    assert (out / "stale.txt").exists()
    prepare(music, out, channels=2, overwrite=True)
    assert not (out / "stale.txt").exists()
    assert PreparedClips(str(out), SR, 2).report.used == 3
    assert sorted(os.listdir(tmp_path)) == ["out"]
    with pytest.raises(ValueError, match="inside the input"):
        write_prepared(music, os.path.join(music, "prepared"), SR, 1)


def test_bad_prepared_folders(tmp_path, mono):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PreparedClips(str(tmp_path / "missing"), SR, 1)
    with pytest.raises(ValueError, match="not a prepared data folder"):
        PreparedClips(str(tmp_path), SR, 1)
    m = json.load(open(os.path.join(mono, "manifest.json")))
    (tmp_path / "manifest.json").write_text(json.dumps(m | {"version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        PreparedClips(str(tmp_path), SR, 1)
    (tmp_path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FileNotFoundError, match="is missing"):
        PreparedClips(str(tmp_path), SR, 1)
    c = load_config("configs/base.py:runlocal")
    with pytest.raises(ConfigError, match="prepared:.*does not exist"):
        pipeline.make_clips(f"prepared:{tmp_path / 'nothing'}", c, SR, 1600, 0)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ConfigError, match="prepared:.*not a prepared data folder"):
        pipeline.make_clips(f"prepared:{tmp_path / 'nothing'}", c, SR, 1600, 0)


def test_pipeline_batches(mono):
    c = load_config("configs/base.py:runlocal")
    apply_overrides(
        c, {"data.source": f"prepared:{mono}", "data.num_threads": "2", "train.batch_size": "4"}
    )
    data = pipeline.build_train_data(c, SR, 1600)
    it = iter(data.dataset)
    for _ in range(3):
        b = next(it)
        assert b.shape == (4, 1600) and np.isfinite(b).all() and np.abs(b).max() > 0.05
    assert data.reports[0].source == f"prepared:{mono}"


def run_prepare(*args):
    cmd = [sys.executable, "-m", "jax_codec.data.prepare", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_prepare_cli(music, tmp_path):
    out = str(tmp_path / "out")
    r = run_prepare(
        f"--data=folder:{music}", f"--output={out}", "--sample_rate=16000", "--channels=2"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SKIPPED 3 files" in r.stdout and "corrupt.flac" in r.stdout
    assert f"prepared 3 clips, 5.1 s of audio (16000 Hz, 2 ch) in 1 shards: {out}" in r.stdout
    assert PreparedClips(out, SR, 2).frames(0) == int(2.3 * SR)
    for args, message in [
        ([f"--data={music}", f"--output={out}"], "--overwrite"),
        ([f"--data={tmp_path}/missing", f"--output={tmp_path}/x"], "does not exist"),
        ([f"--data={tmp_path / 'out'}", f"--output={tmp_path}/y"], "no usable audio files"),
        ([f"--output={tmp_path}/z"], "--data=folder:DIR"),
    ]:
        r = run_prepare(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.slow  # ~100 s on 2 cores (CI runs the slow suite too)
def test_train_cli_on_prepared(music, tmp_path):
    from test_train_cli import metric_steps, run_cli

    out = str(tmp_path / "prepared")
    write_prepared(music, out, 44100, 1, workers=2)
    wd = str(tmp_path / "run")
    r = run_cli(wd, "--config.train.num_steps=2", f"--config.data.source=prepared:{out}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"data source prepared:{out}: 3 clips" in r.stdout + r.stderr
    report = json.load(open(os.path.join(wd, "data_report.json")))
    assert report[0]["used"] == 3 and sum(map(len, report[0]["skipped"].values())) == 3
    assert metric_steps(wd)[-1] == 2
