"""benchmarks/streaming.py's config handling: `--set` overrides reach the measured model and
its one-core child, and bad ones exit with a message (the timing itself is not tested)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))

import streaming as bench  # noqa: E402

from jax_codec.config import ConfigError  # noqa: E402


def test_set_overrides_the_config():
    config = bench.config_of(
        "configs/music48.py", ["model.quantizer=factorized", "model.codebook_dim=8"]
    )
    assert (config.model.quantizer, config.model.codebook_dim) == ("factorized", 8)
    assert bench.config_of("configs/music48.py", []).model.quantizer == "plain"


def test_bad_sets_fail_clearly():
    with pytest.raises(SystemExit, match="expected KEY=VALUE"):
        bench.config_of("configs/base.py", ["model.quantizer"])
    with pytest.raises(ConfigError, match="unknown config key"):
        bench.config_of("configs/base.py", ["model.no_such_field=1"])


def test_the_one_core_child_gets_the_same_sets(monkeypatch):
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd

        class R:
            stdout = '{"cases": [{"case": "1 stream"}]}'

        return R()

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    args = bench.argparse.Namespace(
        config="configs/music48.py", set=["model.quantizer=factorized"], chunk_ms=53.3, seconds=1
    )
    assert bench.one_core(args)["case"] == "1 stream, 1 core"
    assert "--set=model.quantizer=factorized" in seen["cmd"]
