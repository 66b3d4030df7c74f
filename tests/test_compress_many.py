"""`compress` / `decompress` of many files (`--output_dir`): batched outputs equal one-by-one
outputs byte for byte, folders expand, and bad input fails before any work or, for one bad
file among many, skips that file only.

In-process through `jax_codec.__main__.main`, on the session's runlocal weights (no second
`init` compile), with windows of 64 frames (~0.74 s) as in test_compress.py: the short files
(equal lengths at the model's rate, so that the one-by-one runs share compiled shapes) go in
batches; the longer one (long/, in a slow test) streams through the single-file path.
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
    """Inputs of mixed rates and channels: two files and a folder (a subfolder, a hidden file
    and a text file in it, which are not audio inputs); and in long/ a file of two windows."""
    root = tmp_path_factory.mktemp("songs")
    (root / "more" / "sub").mkdir(parents=True)
    (root / "long").mkdir()
    # the short ones: 30870 samples at the model's 44.1 kHz each
    make_music(root / "a.wav", 0.7, 44100, 1, seed=1)
    make_music(root / "more" / "sub" / "e.flac", 0.7, 22050, 2, seed=3)  # stereo: dual mono
    make_music(root / "more" / ".hidden.wav", 0.5, 44100, 1)
    (root / "more" / "notes.txt").write_text("not audio")
    make_music(root / "c.wav", 0.7, 48000, 1, seed=4)
    make_music(root / "long" / "d.flac", 1.3, 48000, 1, seed=2)  # > one window: streamed
    return root


def check_many_equal_alone(workdir, songs, tmp_path, capsys, inputs, outputs):
    """`compress inputs --output_dir` writes `outputs` (relative paths), each byte-identical to
    compressing its input (relative to `songs`) alone; `decompress` of the output folder
    gives each file's audio as decompressing it alone does, to 16-bit rounding."""
    model = ["--checkpoint", workdir, *WINDOW]
    out = tmp_path / "out"
    argv = [songs / i for i in dict.fromkeys(i.split("/")[0] for i in inputs)]
    rc, stdout, err = cli(
        capsys, "compress", *argv, "--output_dir", out, "--batch_size", 2, "--json", *model
    )
    assert rc == 0, err
    report = json.loads(stdout)
    assert [os.path.relpath(r["output"], out) for r in report["outputs"]] == outputs
    assert report["written"] == report["files"] == len(inputs) and report["failed"] == []
    seconds = sum(sf.info(songs / i).duration for i in inputs)
    assert report["audio_seconds"] == pytest.approx(seconds)

    alone = tmp_path / "alone"
    alone.mkdir()
    for src, name in zip(inputs, outputs, strict=True):
        one = alone / os.path.basename(name)
        assert cli(capsys, "compress", songs / src, one, *model)[0] == 0
        assert (out / name).read_bytes() == one.read_bytes(), name

    dec = tmp_path / "dec"
    rc, stdout, err = cli(capsys, "decompress", out, "--output_dir", dec, "--batch_size", 2, *model)
    assert rc == 0, err
    assert f"{len(inputs)} of {len(inputs)} files" in stdout.splitlines()[-1]
    for src, name in zip(inputs, outputs, strict=True):
        wav = os.path.splitext(name)[0] + ".wav"
        one = alone / os.path.basename(wav)
        assert cli(capsys, "decompress", alone / os.path.basename(name), one, *model)[0] == 0
        x, rate = sf.read(songs / src, dtype="float32", always_2d=True)
        y, y_rate = sf.read(dec / wav, dtype="float32", always_2d=True)
        z, _ = sf.read(one, dtype="float32", always_2d=True)
        assert y_rate == rate and y.shape == z.shape == x.shape, name
        assert np.abs(y).max() > 0.01
        np.testing.assert_allclose(y, z, atol=1.5 / 32768, err_msg=name)


def test_many_equal_one_by_one(workdir, songs, tmp_path, capsys):
    """Mono and stereo, at three rates, batched (a folder's files go under its name's place)."""
    inputs = ["a.wav", "more/sub/e.flac", "c.wav"]
    outputs = ["a.jcodec", "sub/e.jcodec", "c.jcodec"]
    check_many_equal_alone(workdir, songs, tmp_path, capsys, inputs, outputs)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.jcodec", "c.jcodec", "sub"]


@pytest.mark.slow  # compiles the windowed single-file path too
def test_long_file_streams_alone_among_batched(workdir, songs, tmp_path, capsys):
    check_many_equal_alone(
        workdir, songs, tmp_path, capsys, ["long/d.flac", "a.wav"], ["d.jcodec", "a.jcodec"]
    )


@pytest.mark.slow  # a second (joint-stereo) model compiles every shape again
def test_joint_stereo_model_many_equal_one_by_one(runlocal_codec, songs, tmp_path, capsys):
    """A joint-stereo model: a stereo file is one code stream, a mono one is duplicated."""
    from conftest import grow_params

    from jax_codec.config import apply_overrides
    from jax_codec.models.codec import build_codec
    from jax_codec.training.loop import BestExporter

    config = load_config(CONFIG)
    apply_overrides(config, {"model.channels": "2", "name": "stereo_runlocal"})
    params = grow_params(louder(runlocal_codec[1]), build_codec(config.model))
    workdir = str(tmp_path / "run")
    BestExporter(workdir).maybe_export(0, 1.0, params, config)
    inputs, outputs = ["a.wav", "more/sub/e.flac"], ["a.jcodec", "sub/e.jcodec"]
    check_many_equal_alone(workdir, songs, tmp_path, capsys, inputs, outputs)


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


def test_failed_run_leaves_no_folders(workdir, tmp_path, capsys):
    """Output folders appear only with the files written into them: a bad checkpoint, or
    inputs that all fail, leave nothing behind (not even an empty --output_dir)."""
    folder = tmp_path / "in" / "sub"
    folder.mkdir(parents=True)
    (folder / "bad.wav").write_text("not audio")
    codes = tmp_path / "codes"
    codes.mkdir()
    (codes / "x.jcodec").write_bytes(b"JCDC broken")
    out = tmp_path / "new" / "out"
    nope = ["--checkpoint", tmp_path / "nope"]
    for argv, code in [
        (["compress", tmp_path / "in", "--output_dir", out, *nope], 2),
        (["decompress", codes, "--output_dir", out, *nope], 2),
        (["compress", tmp_path / "in", "--output_dir", out, "--checkpoint", workdir], 2),
        (["decompress", codes, "--output_dir", out, "--checkpoint", workdir], 1),
    ]:
        rc, _, err = cli(capsys, *argv)
        assert rc == code and "Traceback" not in err, (argv, err)
        assert not (tmp_path / "new").exists(), argv
