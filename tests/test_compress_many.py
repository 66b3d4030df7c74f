"""`compress` / `decompress` of many files (`--output_dir`): batched outputs equal one-by-one
outputs byte for byte, folders expand, and bad input fails before any work or, for one bad
file among many, skips that file only.

In-process through `jax_codec.__main__.main`, on the session's runlocal weights (no second
`init` compile), with windows of 64 frames (~0.74 s) as in test_compress.py: the short files
(equal lengths at the model's rate, so that the one-by-one runs share compiled shapes) go in
batches, the longer one streams through the single-file path.
"""

import json
import os

import numpy as np
import pytest
import soundfile as sf
from conftest import louder
from test_compress import assert_one_line_error, cli, make_music

from jax_codec.config import load_config

CONFIG = "configs/base.py:runlocal"
WINDOW = ["--window_frames", "64"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, runlocal_codec):
    """A `best/` export of the session's runlocal weights (made louder)."""
    from jax_codec.training.loop import BestExporter

    _, params = runlocal_codec
    path = str(tmp_path_factory.mktemp("run"))
    BestExporter(path).maybe_export(0, 1.0, louder(params), load_config(CONFIG))
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """Inputs of mixed rates, channels and lengths: two files and a folder (a subfolder, a
    hidden file and a text file in it, which are not audio inputs)."""
    root = tmp_path_factory.mktemp("songs")
    (root / "more" / "sub").mkdir(parents=True)
    # the short ones: 30870 samples at the model's 44.1 kHz each
    make_music(root / "a.wav", 0.7, 44100, 1, seed=1)
    make_music(root / "more" / "d.flac", 1.3, 48000, 1, seed=2)  # > one window: streamed
    make_music(root / "more" / "sub" / "e.flac", 0.7, 22050, 2, seed=3)  # stereo: dual mono
    make_music(root / "more" / ".hidden.wav", 0.5, 44100, 1)
    (root / "more" / "notes.txt").write_text("not audio")
    make_music(root / "c.wav", 0.7, 48000, 1, seed=4)
    return root


def test_many_equal_one_by_one(workdir, songs, tmp_path, capsys):
    model = ["--checkpoint", workdir, *WINDOW]
    out = tmp_path / "out"
    rc, stdout, err = cli(
        capsys, "compress", songs / "a.wav", songs / "more", songs / "c.wav",
        "--output_dir", out, "--batch_size", 2, "--json", *model,
    )  # fmt: skip
    assert rc == 0, err
    report = json.loads(stdout)
    names = ["a.jcodec", "d.jcodec", "sub/e.jcodec", "c.jcodec"]  # a folder's files: under it
    assert [os.path.relpath(r["output"], out) for r in report["outputs"]] == names
    assert report["written"] == report["files"] == 4 and report["failed"] == []
    assert report["audio_seconds"] == pytest.approx(0.7 + 1.3 + 0.7 + 0.7, abs=1e-3)
    assert sorted(os.listdir(out)) == ["a.jcodec", "c.jcodec", "d.jcodec", "sub"]

    inputs = ["a.wav", "more/d.flac", "more/sub/e.flac", "c.wav"]
    alone = tmp_path / "alone"
    alone.mkdir()
    for src, name in zip(inputs, names, strict=True):
        one = alone / os.path.basename(name)
        assert cli(capsys, "compress", songs / src, one, *model)[0] == 0
        assert (out / name).read_bytes() == one.read_bytes(), name

    # decompress: a folder of .jcodec files back to audio, as one by one up to 16-bit rounding
    dec = tmp_path / "dec"
    rc, stdout, err = cli(capsys, "decompress", out, "--output_dir", dec, "--batch_size", 2, *model)
    assert rc == 0, err
    assert "4 of 4 files" in stdout.splitlines()[-1]
    for src, name in zip(inputs, names, strict=True):
        wav = os.path.splitext(name)[0] + ".wav"
        one = alone / os.path.basename(wav)
        assert cli(capsys, "decompress", alone / os.path.basename(name), one, *model)[0] == 0
        x, rate = sf.read(songs / src, dtype="float32", always_2d=True)
        y, y_rate = sf.read(dec / wav, dtype="float32", always_2d=True)
        z, _ = sf.read(one, dtype="float32", always_2d=True)
        assert y_rate == rate and y.shape == z.shape == x.shape, name
        assert np.abs(y).max() > 0.01
        np.testing.assert_allclose(y, z, atol=1.5 / 32768, err_msg=name)


def test_bad_command_lines_fail_before_any_work(workdir, songs, tmp_path, capsys):
    """Errors the command line decides: one line, exit 2, no model loaded, nothing written."""
    model = ["--checkpoint", workdir]
    a, c = songs / "a.wav", songs / "c.wav"
    out = tmp_path / "out"
    other = tmp_path / "other"
    other.mkdir()
    make_music(other / "a.flac", 0.3, 44100, 1)
    (tmp_path / "empty").mkdir()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "c.jcodec").write_bytes(b"old")
    x = tmp_path / "x.jcodec"
    x.write_bytes(b"JCDC")
    cases = [
        (["compress", a, c, "--output", out / "x.jcodec"], "use --output_dir"),
        (["compress", a, "--output", out / "x.jcodec", "--output_dir", out], "not both"),
        (["compress", a, c, songs / "more"], "give --output_dir"),
        (["compress", a, c], "looks like a second input"),
        (["compress", a], "give the output"),
        (["compress", songs / "more", out / "x.jcodec"], "is a directory.*--output_dir"),
        (["compress", a, other / "a.flac", "--output_dir", out], "would both be written"),
        (["compress", tmp_path / "empty", "--output_dir", out], "no .* files in this folder"),
        (["compress", a, tmp_path / "nope.wav", "--output_dir", out], "no such file"),
        (["compress", a, "--output_dir", out, "--batch_size", 0], "--batch_size"),
        (["compress", a, c, "--output_dir", taken], r"1 of the outputs exist.*--overwrite"),
        (["decompress", x, tmp_path / "y.jcodec"], "looks like a second input"),
        (["decompress", songs, "--output_dir", out], "no .jcodec files"),
    ]
    for argv, match in cases:
        rc, stdout, err = cli(capsys, *argv, *model)
        assert_one_line_error(rc, err, 2, match)
        assert stdout == "" and not out.exists(), argv
    assert os.listdir(taken) == ["c.jcodec"] and (taken / "c.jcodec").read_bytes() == b"old"


def test_bad_file_among_many(workdir, songs, tmp_path, capsys):
    """An unusable file is named and skipped, the others written; --overwrite replaces."""
    model = ["--checkpoint", workdir, *WINDOW]
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    out = tmp_path / "out"
    argv = ["compress", songs / "a.wav", bad, songs / "c.wav", "--output_dir", out, *model]
    rc, stdout, err = cli(capsys, *argv)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith(f"error: {bad}: not usable audio")
    assert lines[1] == "error: 1 of 3 files failed (listed above); the other 2 were written"
    assert sorted(os.listdir(out)) == ["a.jcodec", "c.jcodec"]  # no partial or temporary file
    assert "2 of 3 files" in stdout

    first = (out / "a.jcodec").read_bytes()
    (out / "c.jcodec").write_bytes(b"stale")
    rc, stdout, err = cli(capsys, *argv[: -len(model)], "--overwrite", "--json", *model)
    assert rc == 2 and json.loads(stdout)["failed"][0]["input"] == str(bad)
    assert (out / "a.jcodec").read_bytes() == first and (out / "c.jcodec").stat().st_size > 5

    # decompress: a corrupt .jcodec among good ones exits 1 (a bad file), the others decoded
    (out / "cut.jcodec").write_bytes(first[: len(first) // 2])
    dec = tmp_path / "dec"
    rc, stdout, err = cli(capsys, "decompress", out, "--output_dir", dec, *model)
    assert rc == 1, err
    assert err.startswith(f"error: {out / 'cut.jcodec'}: ") and "2 were written" in err
    assert sorted(os.listdir(dec)) == ["a.wav", "c.wav"]
