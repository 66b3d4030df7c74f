"""Pretrained-weight import: the converted presets equal PyTorch DAC / EnCodec exactly.

Each reference model is built with random weights (no download), perturbed so that every
tensor matters (biases, Snake alphas, weight-norm gains; EnCodec's codebooks drawn from its
own latents), converted in memory, and run beside ours on the same audio: codes identical,
decoded audio within 1e-4 (fp32). Needs torch plus descript-audio-codec / encodec; skipped
without them.

torchaudio: dac (through audiotools) and encodec import it at module level but these tests
use none of it, and its PyPI wheel fails to load beside CPU torch (libc10_cuda.so). When it
cannot be imported, an empty stand-in module is registered before importing them.
"""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import model_input, subprocess_env  # noqa: E402

from jax_codec.config import ConfigError, apply_overrides, load_config  # noqa: E402
from jax_codec.convert import (  # noqa: E402
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
)
from jax_codec.convert.core import dac_kwargs  # noqa: E402
from jax_codec.models.codec import build_codec  # noqa: E402

TOL = 1e-4


def _reference(name: str):
    """Import a reference package, with a stand-in torchaudio if the real one cannot load."""
    try:
        import torchaudio  # noqa: F401
    except Exception:  # absent, or the CUDA wheel failing beside CPU torch
        for key in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
            del sys.modules[key]
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "0.0+stub"
        sys.modules["torchaudio"] = stub
    return pytest.importorskip(name)


def _music(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A few decaying tones, a sweep and noise: varied enough to use many codes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = np.zeros_like(t)
    for f0 in rng.uniform(80, 2000, 5):
        x += rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * f0 * t) * np.exp(-t * rng.uniform(0, 6))
    x += 0.1 * np.sin(2 * np.pi * (200 + 3000 * t) * t)
    x += 0.03 * rng.standard_normal(t.shape)
    return x.astype(np.float32)


def _perturb(model, seed: int) -> None:
    """Random biases, alphas and weight-norm gains (torch's init leaves them 0 / 1 / |v|)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("weight_g") or name.endswith("original0"):
                p.mul_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith("bias") and "lstm" not in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _dac_model(model_config, seed: int = 0):
    dac = _reference("dac")
    m = model_config
    torch.manual_seed(seed)
    model = dac.DAC(**dac_kwargs(m)).eval()
    _perturb(model, seed + 1)
    return model


def _ours(config, params, audio: np.ndarray, n_quantizers=None):
    """(codes [K, F], decoded audio [T']) of our codec: encode, then decode the codes."""
    codec = build_codec(config.model, dtype="float32")
    codes = jax.jit(lambda p, a: codec.apply(p, a, n_quantizers, method=codec.encode))(
        params, jnp.asarray(audio)[None, :, None]
    )
    y = jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))(params, codes)
    return np.stack([np.asarray(c)[0] for c in codes]), np.asarray(y)[0, :, 0]


def _dac_reference(model, audio: np.ndarray, sr: int, n_quantizers=None):
    """(codes [K, F], audio) of PyTorch DAC: encode, then its own decode of those codes."""
    with torch.no_grad():
        x = model.preprocess(torch.from_numpy(audio)[None, None], sr)
        _, codes, *_ = model.encode(x, n_quantizers)
        z, _, _ = model.quantizer.from_codes(codes)
        return codes[0].numpy(), model.decode(z)[0, 0].numpy()


def _compare(codes_ref, y_ref, codes, y) -> float:
    assert codes.shape == codes_ref.shape
    mismatched = int((codes != codes_ref).sum())
    assert mismatched == 0, f"{mismatched} of {codes.size} codes differ"
    # DAC 16/24 kHz decode F frames to hop * F - 8 samples (odd-stride trim); ours adds zeros.
    n = len(y_ref)
    assert len(y) >= n and not np.any(y[n:])
    diff = float(np.max(np.abs(y[:n] - y_ref)))
    assert diff <= TOL, f"max abs diff {diff}"
    return diff


DAC_PRESETS = [
    "configs/dac_44khz.py",
    # The same converter and modules at other rates and depths: slow suite.
    pytest.param("configs/dac_24khz.py", marks=pytest.mark.slow),
    pytest.param("configs/dac_16khz.py", marks=pytest.mark.slow),
    pytest.param("configs/dac_44khz.py:16kbps", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spec", DAC_PRESETS)
def test_dac_preset_matches_pytorch(spec):
    config = load_config(spec)
    m = config.model
    model = _dac_model(m)
    params = convert_state_dict("dac", model.state_dict(), config)
    audio = _music(0.5, m.sample_rate)
    codes_ref, y_ref = _dac_reference(model, audio, m.sample_rate)
    codes, y = _ours(config, params, audio)
    assert len(np.unique(codes)) > 50  # the comparison exercises many codes
    diff = _compare(codes_ref, y_ref, codes, y)
    print(f"{spec}: max abs diff {diff:.2e}")
    if spec == "configs/dac_44khz.py":  # fewer quantizers (a lower bitrate) as well
        codes_ref, y_ref = _dac_reference(model, audio, m.sample_rate, n_quantizers=3)
        codes, y = _ours(config, params, audio, n_quantizers=3)
        _compare(codes_ref, y_ref, codes, y)


def _encodec_model(seed: int = 0):
    encodec = _reference("encodec")
    torch.manual_seed(seed)
    model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    _perturb(model, seed + 1)
    # Its codebooks start at zero (k-means init on the first batch): fill each level with
    # (noisy) residual vectors of other audio, as its k-means would, so every code matters.
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        r = model.encoder(torch.from_numpy(_music(2.0, 24000, seed=9))[None, None])[0].T
        for layer in model.quantizer.vq.layers:
            cb = layer._codebook
            pick = torch.randint(0, r.shape[0], (cb.embed.shape[0],), generator=g)
            cb.embed.copy_(r[pick] + 0.3 * r.std() * torch.randn(cb.embed.shape, generator=g))
            r = r - cb.decode(cb.encode(r[None]))[0]
    return model


@pytest.fixture(scope="module")
def encodec_converted():
    config = load_config("configs/encodec_24khz.py")
    model = _encodec_model()
    return config, model, convert_state_dict("encodec", model.state_dict(), config)


def test_encodec_preset_matches_pytorch(encodec_converted):
    config, model, params = encodec_converted
    audio = _music(0.5, 24000)  # 12000 samples: not a whole number of 320-sample frames
    codec = build_codec(config.model)
    for kbps, n_q in ((24.0, 32), (6.0, 8)):
        assert n_q == int(kbps / codec.bitrate_kbps(1))
        with torch.no_grad():
            model.set_target_bandwidth(kbps)
            frames = model.encode(torch.from_numpy(audio)[None, None])
            codes_ref = frames[0][0][0].numpy()
            y_ref = model.decode(frames)[0, 0].numpy()
        codes, y = _ours(config, params, audio, n_quantizers=n_q)
        assert len(np.unique(codes)) > 50
        diff = _compare(codes_ref, y_ref, codes, y)
        print(f"encodec_24khz at {kbps} kbps: max abs diff {diff:.2e}")


def test_encodec_windowed_paths_are_whole_signal(encodec_converted):
    """An LSTM model's receptive field is unbounded: compress / chunked_encode / chunked_decode
    process it as one window of the whole signal (as PyTorch EnCodec 24 kHz does), so the codes
    and audio equal PyTorch's; windows are used (and flagged inexact) only past
    MAX_WHOLE_SIGNAL_SECONDS or with an explicit window size."""
    from jax_codec.inference import chunked

    config, model, params = encodec_converted
    codec = build_codec(config.model)
    sr = config.model.sample_rate
    audio = _music(2.0, sr, seed=4)
    total = chunked.encoded_frames(codec, len(audio))
    assert chunked.window_plan(codec, total) == (total, 0, True)
    long = int(chunked.MAX_WHOLE_SIGNAL_SECONDS * codec.frame_rate) + 75
    core, context, exact = chunked.window_plan(codec, long)
    assert core == chunked.DEFAULT_WINDOW_FRAMES and context >= 5 * 75 and not exact
    assert not chunked.window_plan(codec, total, window_frames=64)[2]
    with torch.no_grad():
        model.set_target_bandwidth(6.0)
        frames = model.encode(torch.from_numpy(audio)[None, None])
        codes_ref = frames[0][0][0].numpy()
        y_ref = model.decode(frames)[0, 0].numpy()
    codes = chunked.chunked_encode(codec, params, audio[None], n_quantizers=8)
    assert np.stack([c[0] for c in codes]).shape == codes_ref.shape
    np.testing.assert_array_equal(np.stack([c[0] for c in codes]), codes_ref)
    y = chunked.chunked_decode(codec, params, codes, length=len(audio))[0]
    assert np.max(np.abs(y - y_ref[: len(y)])) <= TOL


def test_encodec_model_refuses_to_stream(encodec_converted):
    from jax_codec.inference import StreamingDecoder, StreamingEncoder

    config, _, params = encodec_converted
    codec = build_codec(config.model)
    with pytest.raises(ValueError, match="cannot stream chunk by chunk"):
        StreamingEncoder(codec, params, chunk_frames=2)
    with pytest.raises(ValueError, match="cannot stream chunk by chunk"):
        StreamingDecoder(codec, params, chunk_frames=2)


# ----------------------------------------------------------------- names, errors, the CLI


def _tiny(spec: str = "configs/dac_24khz.py:tiny", **overrides):
    config = load_config(spec)
    if overrides:
        apply_overrides(config, {k: repr(v) for k, v in overrides.items()})
    return config


def test_all_weight_norm_spellings_convert_alike():
    """Old weight_g/weight_v, new parametrizations.weight.original0/1, and plain weights."""
    config = _tiny()
    model = _dac_model(config.model)
    sd = model.state_dict()
    reference = convert_state_dict("dac", sd, config)
    new = {
        k.replace(".weight_g", ".parametrizations.weight.original0").replace(
            ".weight_v", ".parametrizations.weight.original1"
        ): v
        for k, v in sd.items()
    }
    same = convert_state_dict("dac", new, config)
    jax.tree.map(np.testing.assert_array_equal, reference, same)
    plain = {}
    for k, v in sd.items():
        if k.endswith(".weight_v"):
            g = sd[k[: -len("v")] + "g"]
            plain[k[: -len("_v")]] = torch._weight_norm(v, g, 0)
        elif not k.endswith(".weight_g"):
            plain[k] = v
    folded = convert_state_dict("dac", plain, config)
    audio = _music(0.2, config.model.sample_rate)
    codes_a, y_a = _ours(config, reference, audio)
    codes_b, y_b = _ours(config, folded, audio)
    np.testing.assert_array_equal(codes_a, codes_b)
    assert np.max(np.abs(y_a - y_b)) <= TOL


def test_mismatched_preset_names_the_tensor():
    config_24 = _tiny("configs/dac_24khz.py:tiny")
    sd = _dac_model(config_24.model).state_dict()
    # 32 codebooks into a 12-codebook preset: the 13th is left over.
    with pytest.raises(ConversionError, match=r"unused tensor quantizer\.quantizers\.12\."):
        convert_state_dict("dac", sd, _tiny("configs/dac_16khz.py:tiny"))
    # A 12-codebook checkpoint into a 32-codebook preset: the 13th is missing.
    sd_16 = _dac_model(_tiny("configs/dac_16khz.py:tiny").model).state_dict()
    with pytest.raises(ConversionError, match=r"missing tensor quantizer\.quantizers\.12\."):
        convert_state_dict("dac", sd_16, config_24)
    # The full-width preset: the first conv is mis-shaped; both shapes are named.
    with pytest.raises(ConversionError) as e:
        convert_state_dict("dac", sd, load_config("configs/dac_24khz.py"))
    assert str(e.value).startswith(
        "tensor encoder.block.0.bias has shape (4,), the preset expects (64,)"
    )
    # DAC's metadata names a hyperparameter the shapes cannot show (the sample rate).
    meta = {"kwargs": {"sample_rate": 16000, "encoder_rates": [2, 4, 5, 8]}}
    with pytest.raises(ConversionError, match="sample_rate=16000"):
        convert_state_dict("dac", sd, config_24, metadata=meta)
    # EnCodec weights are not DAC weights.
    with pytest.raises(ConversionError, match="missing tensor"):
        convert_state_dict("dac", _encodec_model().state_dict(), config_24)


def _run_convert(*args):
    return subprocess.run(
        [sys.executable, "-m", "jax_codec", "convert", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
    )


def test_convert_cli_writes_a_loadable_checkpoint(tmp_path):
    from jax_codec.inference import load_codec

    config = _tiny()
    model = _dac_model(config.model)
    ckpt = tmp_path / "weights_24khz.pth"
    m = config.model
    kwargs = {"encoder_dim": m.encoder_width, "sample_rate": m.sample_rate, "n_codebooks": 32}
    torch.save({"state_dict": model.state_dict(), "metadata": {"kwargs": kwargs}}, ckpt)
    out = tmp_path / "converted"
    r = _run_convert(
        "--from=dac",
        f"--weights={ckpt}",
        "--config=configs/dac_24khz.py:tiny",
        f"--output={out}",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "converted.json").read_text())["source"] == "dac"
    codec, params, loaded = load_codec(str(out))
    assert loaded.model.transpose_norm == "in" and loaded.model.vq_strides == [1] * 32
    audio = _music(0.3, m.sample_rate)
    codes_ref, y_ref = _dac_reference(model, audio, m.sample_rate)
    codes, y = _ours(loaded, params, audio)
    _compare(codes_ref, y_ref, codes, y)

    # Bad input: exit code 2 and one line naming the problem, no traceback.
    r = _run_convert(
        "--from=dac",
        f"--weights={ckpt}",
        "--config=configs/dac_16khz.py:tiny",
        f"--output={tmp_path / 'bad'}",
    )
    assert r.returncode == 2
    # DAC's metadata names the mismatch before any tensor is compared.
    assert r.stderr.startswith("error: the checkpoint's DAC was built with n_codebooks=32, ")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    for args, message in (
        ([f"--weights={tmp_path / 'nope.pth'}"], "does not exist"),
        ([f"--weights={ckpt}", "--config=configs/dac_24khz.py:huge"], "unknown variant"),
        ([f"--weights={ckpt}", f"--output={out}"], "exists; pass --overwrite"),
    ):
        full = {
            "--config": "--config=configs/dac_24khz.py:tiny",
            "--output": f"--output={tmp_path / 'x'}",
        }
        for a in args:
            full[a.split("=")[0]] = a
        r = _run_convert("--from=dac", *full.values())
        assert r.returncode == 2 and r.stderr.startswith("error:"), r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr


def test_bitstream_decodes_like_pytorch_dac(tmp_path):
    """compress -> .jcodec -> decompress with a converted DAC equals PyTorch DAC's own decode of
    the codes in the file (and those codes are PyTorch DAC's). Small windows, so the windowed
    encode/decode with receptive-field context is exercised too."""
    import soundfile as sf

    from jax_codec import bitstream

    config = _tiny("configs/dac_24khz.py:tiny")  # stride 5: the shortened decoder output
    sr = config.model.sample_rate
    model = _dac_model(config.model)
    params = convert_state_dict("dac", model.state_dict(), config)
    from jax_codec.convert import save_converted

    ckpt = save_converted(params, config, str(tmp_path / "dac24"))
    audio = _music(1.0, sr)
    wav, jc, out = tmp_path / "in.wav", tmp_path / "x.jcodec", tmp_path / "out.wav"
    sf.write(wav, audio, sr, subtype="FLOAT")
    env = subprocess_env()
    for args in (
        ["compress", str(wav), str(jc), "--entropy=off"],
        ["decompress", str(jc), str(out), "--subtype=FLOAT"],
    ):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "jax_codec",
                *args,
                f"--checkpoint={ckpt}",
                "--window_frames=16",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        assert r.returncode == 0, r.stdout + r.stderr
    with bitstream.Reader(str(jc)) as reader:
        stored = np.stack(reader.read_all()[0])  # [K, F]
        gain = np.float32(reader.header.gain)
    # compress feeds the model the input at the level it trains at (as DAC's compress does)
    audio_in = model_input(audio, sr, config.data.normalize_db)[0]
    codes_ref, _ = _dac_reference(model, audio_in, sr)
    np.testing.assert_array_equal(stored, codes_ref)
    with torch.no_grad():
        z, _, _ = model.quantizer.from_codes(torch.from_numpy(stored.astype(np.int64))[None])
        y_ref = model.decode(z)[0, 0].numpy()
    y, file_sr = sf.read(out, dtype="float32")
    assert file_sr == sr and len(y) == len(audio)
    n = min(len(y_ref), len(y))  # DAC 24 kHz decodes 320 F - 8 samples
    assert np.max(np.abs(y[:n] - gain * y_ref[:n])) <= TOL


def test_safetensors_checkpoint(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    config = _tiny()
    sd = _dac_model(config.model).state_dict()
    path = tmp_path / "weights.safetensors"
    st.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    out = convert_checkpoint("dac", str(path), config, str(tmp_path / "out"))
    assert os.path.isdir(os.path.join(out, "params"))


# ------------------------------------------------------------------------- fine-tuning


# A DAC of the preset's structure, small enough to compile a train step on a CPU quickly:
# two blocks, two codebooks, one discriminator of each kind.
FINETUNE = "configs/dac_44khz.py:tiny,runlocal"
FINETUNE_OVERRIDES = {
    "model.encoder_strides": (4,),
    "model.decoder_strides": (4,),
    "model.vq_strides": (1, 1),
    "discriminator.kinds": ("mpd",),
    "discriminator.periods": (2,),
    "loss.mel_window_lengths": (64, 256),
    "loss.mel_n_mels": (10, 40),
}


@pytest.mark.slow  # ~100 s on 2 cores (CI runs the slow suite too)
def test_init_from_finetunes_converted_weights(tmp_path, caplog, monkeypatch):
    """`--init_from`: the run starts from the converted generator, discriminators fresh."""
    from jax_codec.convert.finetune import load_generator_params
    from jax_codec.inference import load_codec
    from jax_codec.training import loop
    from jax_codec.training.loop import train_and_evaluate

    # Evaluation (8 x 1 s) would dominate the run time on a CPU.
    monkeypatch.setattr(loop, "EVAL_SECONDS", 0.1)
    monkeypatch.setattr(loop, "EVAL_EXAMPLES", 2)

    config = _tiny(FINETUNE, **FINETUNE_OVERRIDES)
    model = _dac_model(config.model)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": model.state_dict(), "metadata": {}}, path)
    converted = convert_checkpoint("dac", str(path), config, str(tmp_path / "converted"))

    wd = str(tmp_path / "run")
    apply_overrides(config, {"train.num_steps": "2", "train.batch_size": "8"})  # 8 test devices
    with caplog.at_level("WARNING"):
        metrics = train_and_evaluate(config, wd, init_from=converted)
    assert metrics["step"] == 2 and np.isfinite(metrics["loss/mel"])
    assert "Initialised from" in caplog.text
    # The step-0 evaluation exported the generator as loaded: exactly the converted weights
    # (unless a later evaluation scored better and replaced it).
    _, best, _ = load_codec(os.path.join(wd, "best"))
    if json.loads(open(os.path.join(wd, "best", "best.json")).read())["step"] == 0:
        _, conv_params, _ = load_codec(converted)
        jax.tree.map(np.testing.assert_array_equal, conv_params, best)
    # The trained generator still decodes like the converted one, roughly (2 small steps).
    audio = _music(0.2, config.model.sample_rate)
    _, y_conv = _ours(config, load_codec(converted)[1], audio)
    _, y_run = _ours(config, load_codec(wd, which="latest")[1], audio)
    assert np.corrcoef(y_conv, y_run)[0, 1] > 0.9

    # Resuming ignores --init_from, and says so.
    caplog.clear()
    apply_overrides(config, {"train.num_steps": "3"})
    with caplog.at_level("WARNING"):
        metrics = train_and_evaluate(config, wd, init_from=converted)
    assert metrics["step"] == 3 and "ignored: resuming" in caplog.text

    # A checkpoint of another architecture is refused, naming the differing field.
    with pytest.raises(ConfigError, match=r"encoder_strides=\(4,\), this run's config has"):
        load_generator_params(converted, _tiny(FINETUNE))


def test_train_cli_init_from_errors_early(tmp_path):
    """A bad --init_from fails in seconds with one `error:` line, before any compilation."""
    env = subprocess_env()
    cmd = [
        sys.executable,
        "-m",
        "jax_codec.train",
        "--config=configs/dac_16khz.py:tiny,runlocal",
        f"--workdir={tmp_path / 'run'}",
    ]
    r = subprocess.run(
        [*cmd, f"--init_from={tmp_path / 'missing'}"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 1 and "error: --init_from=" in r.stderr and "does not exist" in r.stderr
    config = _tiny("configs/dac_24khz.py:tiny")
    params = convert_state_dict("dac", _dac_model(config.model).state_dict(), config)
    from jax_codec.convert import save_converted

    other = save_converted(params, config, str(tmp_path / "dac24"))
    r = subprocess.run(
        [*cmd, f"--init_from={other}"], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 1 and "its model has sample_rate=24000" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
