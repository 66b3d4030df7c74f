"""benchmarks/streaming.py's config handling: `--config.x=y` overrides reach the measured model
and its one-core child, and bad ones exit with a message (the timing itself is not tested)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import streaming as bench  # noqa: E402

from jax_codec.config import ConfigError  # noqa: E402


def _measured_config(monkeypatch, argv):
    """The config `main(argv)` would measure (the model is not built)."""
    seen = {}

    def fake_load_codec(config):
        seen["config"] = config
        raise SystemExit(0)

    import jax_codec.inference.api as api

    monkeypatch.setattr(api, "load_codec", fake_load_codec)
    with pytest.raises(SystemExit):
        bench.main(argv)
    return seen["config"]


def test_overrides_reach_the_config(monkeypatch):
    config = _measured_config(
        monkeypatch,
        [
            "--config=configs/music48.py",
            "--config.model.quantizer=factorized",
            "--config.model.codebook_dim",
            "8",
        ],
    )
    assert (config.model.quantizer, config.model.codebook_dim) == ("factorized", 8)
    assert _measured_config(monkeypatch, ["--config=configs/music48.py"]).model.quantizer == (
        "plain"
    )


def test_bad_overrides_fail_clearly(monkeypatch):
    with pytest.raises(SystemExit, match="needs a value"):
        bench.main(["--config=configs/base.py", "--config.model.quantizer"])
    with pytest.raises(ConfigError, match="unknown config key"):
        _measured_config(monkeypatch, ["--config.model.no_such_field=1"])


def test_the_one_core_child_gets_the_same_overrides(monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd

        class R:
            stdout = '{"cases": [{"case": "1 stream"}]}'

        return R()

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    args = bench.argparse.Namespace(
        config="configs/music48.py",
        overrides={"model.quantizer": "factorized"},
        chunk_ms=53.3,
        seconds=1,
    )
    assert bench.one_core(args)["case"] == "1 stream, 1 core"
    assert "--config.model.quantizer=factorized" in seen["cmd"]
