"""The command tree (`python -m jax_codec COMMAND`) and its one flag vocabulary.

In-process through the dispatcher (one interpreter for every command: a cold start per command
would cost seconds each); the subprocess forms are covered by the commands' own tests.
"""

import json
import re

import numpy as np
import pytest
import soundfile as sf

from jax_codec.__main__ import COMMANDS, main, split_config_overrides


def test_every_command_has_help_with_an_example(capsys):
    assert set(COMMANDS) == {
        "train", "evaluate", "convert", "prepare", "compress", "decompress", "stream", "info",
        "priors", "demo", "export",
    }  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", out, re.M), command
    for command in COMMANDS:
        try:
            code = main([command, "--help"])
        except SystemExit as e:  # argparse exits after printing help
            code = e.code
        out = capsys.readouterr().out
        assert code == 0, command
        # A runnable example: the command followed by arguments (the usage line has "[").
        assert re.search(rf"python -m jax_codec {command} [^\[\s]", out), (command, out)
    capsys.readouterr()


def test_config_overrides_are_split_from_the_other_arguments():
    rest, overrides = split_config_overrides(
        ["info", "--config=base", "--config.model.latent_dim=64", "--config.train.seed", "3"]
    )
    assert rest == ["info", "--config=base"]
    assert overrides == {"model.latent_dim": "64", "train.seed": "3"}


def test_info_config_takes_overrides(capsys):
    base = ["info", "--config=configs/base.py:runlocal", "--json"]
    assert main(base) == 0
    before = json.loads(capsys.readouterr().out)
    assert main([*base, "--config.model.latent_dim=8"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["params"]["total"] < before["params"]["total"]  # a narrower latent
    assert after["bitrate_kbps"] == before["bitrate_kbps"]
    assert main([*base, "--config.model.no_such_field=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no_such_field" in err


def test_convert_checkpoint_is_a_deprecated_alias_of_weights(tmp_path, capsys):
    args = ["convert", "--from=dac", "--config=configs/dac_24khz.py:tiny"]
    missing = tmp_path / "nope.pth"
    assert main([*args, f"--output={tmp_path / 'a'}", f"--weights={missing}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err
    assert len(err.strip().splitlines()) == 1
    assert main([*args, f"--output={tmp_path / 'b'}", f"--checkpoint={missing}"]) == 2
    notice, error = capsys.readouterr().err.strip().splitlines()
    assert "--checkpoint is deprecated" in notice and "--weights" in notice
    assert error.startswith("error: ") and "does not exist" in error
    with pytest.raises(SystemExit) as e:
        main([*args, f"--output={tmp_path / 'c'}"])
    assert e.value.code == 2 and "--weights" in capsys.readouterr().err


def test_evaluate_data_takes_a_path_or_a_folder_spec(tmp_path):
    from jax_codec.cli_errors import CliError
    from jax_codec.evaluation.__main__ import build_parser, plan_from_args

    (tmp_path / "songs").mkdir()
    sf.write(tmp_path / "songs" / "a.wav", np.zeros(4410, np.float32), 44100)
    base = ["--config", "configs/base.py:runlocal", "--random_init", "--baselines", "none"]
    base += ["--metrics", "mel_distance"]
    plain = plan_from_args(build_parser().parse_args([*base, "--data", str(tmp_path / "songs")]))
    spec = plan_from_args(build_parser().parse_args([*base, "--data", f"folder:{tmp_path}"]))
    assert plain.files == ["a.wav"] and spec.files == ["songs/a.wav"]
    for other in ("synthetic", f"prepared:{tmp_path}", "tfds:x/train"):
        with pytest.raises(CliError, match="folder:PATH or a plain path"):
            plan_from_args(build_parser().parse_args([*base, "--data", other]))
