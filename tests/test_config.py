"""Config loading, locking, validation, and the `info` command."""

import json

import pytest

from jax_codec.__main__ import main
from jax_codec.config import ConfigError, apply_overrides, load_config


def test_base_config_targets():
    c = load_config("configs/base.py")
    assert c.model.sample_rate == 44100 and c.model.causal


def test_unknown_keys_fail():
    c = load_config("configs/base.py")
    with pytest.raises(AttributeError):
        c.model.no_such_field = 3  # locked
    with pytest.raises(ConfigError, match="unknown config key"):
        apply_overrides(c, {"model.no_such_field": "3"})
    apply_overrides(c, {"model.latent_dim": "256"})
    assert c.model.latent_dim == 256


def test_unknown_variant_and_bad_values_fail():
    with pytest.raises(ValueError, match="unknown variant"):
        load_config("configs/base.py:bogus")
    c = load_config("configs/base.py")
    with pytest.raises(ConfigError, match="decoder_strides"):
        apply_overrides(c, {"model.decoder_strides": "(8, 8, 4)"})
    with pytest.raises(ConfigError, match="not found"):
        load_config("configs/nope.py")


def test_info_json(capsys):
    assert main(["info", "--config=configs/base.py", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in (
        "params",
        "bitrate_kbps",
        "frame_rates_hz",
        "latency_ms",
        "gflops_per_audio_second",
    ):
        assert key in s
    assert s["frame_rates_hz"][:3] == pytest.approx(
        [44100 / 2048, 44100 / 1024, 44100 / 512], rel=1e-4
    )
    # 2 levels at 21.5/43 Hz + 6 at 86 Hz, 10 bits each
    assert s["bitrate_kbps"] == pytest.approx(
        (44100 / 2048 + 44100 / 1024 + 6 * 44100 / 512) * 10 / 1000, rel=1e-4
    )
    assert 1.0 <= s["bitrate_kbps"] <= 6.0
    assert s["latency_ms"] == pytest.approx(2048 / 44.1, rel=1e-4) and s["latency_ms"] <= 50
    assert 5 < s["gflops_per_audio_second"] <= 30
    assert (
        s["params"]["total"]
        == s["params"]["encoder"] + s["params"]["quantizer"] + s["params"]["decoder"]
    )


def test_info_text_and_errors(capsys):
    assert main(["info", "--config=configs/base.py:runlocal,noncausal"]) == 0
    out = capsys.readouterr().out
    assert "non-causal" in out and "GFLOP" in out
    assert main(["info", "--config=configs/missing.py"]) == 2
    assert "not found" in capsys.readouterr().err
