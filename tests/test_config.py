"""Config loading, locking, validation, and the `info` command."""

import json
import pathlib

import ml_collections
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
    assert (s["sample_rate"], s["channels"], s["stereo"]) == (44100, 1, None)
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


def test_parse_arg_types_values_and_lists_choices():
    from jax_codec.configs.common import parse_arg

    a = parse_arg("runlocal,noncausal", runlocal=False, noncausal=False)
    assert a.runlocal is True and a.noncausal is True
    a = parse_arg("steps=30,rate=0.5,name=x,fast=false", steps=10, rate=1.0, name="", fast=True)
    assert (a.steps, a.rate, a.name, a.fast) == (30, 0.5, "x", False)
    assert parse_arg(None, runlocal=False).runlocal is False
    assert parse_arg("n=4", n=(None, int)).n == 4
    with pytest.raises(ValueError, match="unknown variant 'bogus'; choose from runlocal, tiny"):
        parse_arg("runlocal,bogus", runlocal=False, tiny=False)
    with pytest.raises(ValueError, match="steps=.*x"):
        parse_arg("steps=x", steps=10)
    with pytest.raises(ValueError, match="needs a value"):
        parse_arg("steps", steps=10)
    with pytest.raises(ValueError, match="no variants"):
        parse_arg("runlocal")


def test_presets_load_by_name_and_by_file():
    from jax_codec.configs import PRESETS

    assert sorted(PRESETS) == sorted(p.stem for p in pathlib.Path("configs").glob("*.py"))
    for name in PRESETS:
        assert load_config(name).to_dict() == load_config(f"configs/{name}.py").to_dict()
    c = load_config("base:runlocal,noncausal")
    assert c.name == "base_runlocal_noncausal" and not c.model.causal
    assert c.to_dict() == load_config("configs/base.py:runlocal,noncausal").to_dict()
    with pytest.raises(ConfigError, match="config 'bsae' not found: give a preset \\(base, "):
        load_config("bsae:runlocal")
    with pytest.raises(ValueError, match="unknown variant"):
        load_config("dac_24khz:huge")


def test_presets_declare_no_fields_of_their_own():
    """Every field of every preset is one of `default_config()`'s (declared once there)."""
    from jax_codec.configs import PRESETS
    from jax_codec.configs.common import default_config

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
        return out

    declared = keys(default_config().to_dict())
    for name in PRESETS:
        assert keys(load_config(name).to_dict()) == declared, name


def test_old_flat_model_configs_build_the_same_codec():
    """config.json of runs from before `model.seanet` / `model.snac` still loads."""
    from jax_codec.models.codec import build_codec

    for name in ("encodec_24khz", "snac_32khz", "base"):
        model = load_config(name).model.to_dict()
        arch = model["arch"]
        flat = {k: v for k, v in model.items() if k not in ("seanet", "snac")}
        for sub in ("seanet", "snac"):
            if sub == arch:
                flat.update(model[sub])
        if name == "base":  # the oldest layout: no architecture keys at all
            for key in ("arch", "quantizer", "transpose_trim", "transpose_norm"):
                del flat[key]
        old = ml_collections.ConfigDict(json.loads(json.dumps(flat)))
        assert build_codec(old) == build_codec(load_config(name).model), name


def test_config_flag_reads_presets_files_and_overrides():
    from absl import flags

    from jax_codec.config import define_config_flag

    for spec in ("base:runlocal", "configs/base.py:runlocal"):
        argv = ["prog", f"--config={spec}", "--config.train.batch_size=2"]
        fv = flags.FlagValues()
        holder = define_config_flag("config", "help", flag_values=fv, sys_argv=argv)
        fv(argv)
        assert holder.value.name == "base_runlocal" and holder.value.train.batch_size == 2
