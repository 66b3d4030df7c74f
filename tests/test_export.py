"""Export: StableHLO, ONNX and LiteRT parts that run without jax_codec, equal to the model.

Each format's artifacts run in one fresh interpreter that imports neither jax_codec nor Flax
(nor JAX, for ONNX and LiteRT); the model's own outputs are computed once per module."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import louder, subprocess_env

from jax_codec.__main__ import main
from jax_codec.config import load_config
from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.export import ExportError, export_file, export_part
from jax_codec.export.artifact import STREAM_PARTS
from jax_codec.inference import streaming
from jax_codec.inference.api import LoadedCodec

STREAM_CHUNK = 3  # frames: not a divisor of the 4-frame block, so the encoder carries a delay

# Each runner reads the artifacts of one format from DIR (encoder, decoder, decoder2 of the
# first 2 levels, stream_encoder, stream_decoder; the ones present), the inputs DIR/in.npz
# and DIR/chunks.npz, and writes DIR/out.npz: NAME/codes{i}, NAME/audio, NAME/audio2 per
# input, stream/codes and stream/audio for the chunks.
RUNNERS = {
    # JAX alone: the host a StableHLO deployer has.
    "stablehlo": r"""
import json, os, sys
import jax, numpy as np
from jax import export
d = sys.argv[1]
load = lambda n: export.deserialize(open(f"{d}/{n}.stablehlo", "rb").read())
inputs, out = np.load(f"{d}/in.npz"), {}
enc, dec, dec2 = load("encoder"), load("decoder"), load("decoder2")
for name in sorted(inputs.files):
    codes = enc.call(inputs[name])
    out[name + "/audio"] = np.asarray(dec.call(codes))
    if name == "b2n3":  # the 2-level decoder at one shape
        out[name + "/audio2"] = np.asarray(dec2.call(codes[:2]))
    for i, c in enumerate(codes):
        out[f"{name}/codes{i}"] = np.asarray(c)

def zero_state(exp):
    leaves = [np.zeros(a.shape, a.dtype) for a in exp.in_avals]
    (state, _), _ = jax.tree.unflatten(exp.in_tree, leaves)
    return state

if os.path.exists(f"{d}/stream_encoder.stablehlo"):
    senc, sdec = load("stream_encoder"), load("stream_decoder")
    delay = json.load(open(f"{d}/stream_encoder.stablehlo.json"))["delay_chunks"]
    es, ds, codes, audio = zero_state(senc), zero_state(sdec), [], []
    for i, chunk in enumerate(np.load(f"{d}/chunks.npz")["chunks"]):
        c, es = senc.call(es, chunk)
        if i >= delay:
            y, ds = sdec.call(ds, c)
            codes.append(np.asarray(c))
            audio.append(np.asarray(y))
    out["stream/codes"], out["stream/audio"] = np.stack(codes), np.stack(audio)
np.savez(f"{d}/out.npz", **out)
assert "jax_codec" not in sys.modules and "flax" not in sys.modules, "imported jax_codec/flax"
""",
    # onnxruntime and NumPy alone; the stream loop as docs/export.md shows it.
    "onnx": r"""
import json, os, sys
import numpy as np, onnxruntime as ort
d = sys.argv[1]
load = lambda n: ort.InferenceSession(f"{d}/{n}.onnx", providers=["CPUExecutionProvider"])
inputs, out = np.load(f"{d}/in.npz"), {}
enc, dec, dec2 = load("encoder"), load("decoder"), load("decoder2")
for name in sorted(inputs.files):
    codes = enc.run(None, {"audio": inputs[name]})
    out[name + "/audio"] = dec.run(None, {f"codes_{i}": c for i, c in enumerate(codes)})[0]
    if name == "b2n3":
        out[name + "/audio2"] = dec2.run(None, {"codes_0": codes[0], "codes_1": codes[1]})[0]
    for i, c in enumerate(codes):
        out[f"{name}/codes{i}"] = c

DTYPES = {"tensor(float)": np.float32, "tensor(int32)": np.int32}

def zero_state(session):
    return {i.name: np.zeros(i.shape, DTYPES[i.type])
            for i in session.get_inputs() if i.name.startswith("state_")}

def step(session, state, **x):
    names = [o.name for o in session.get_outputs()]
    result = session.run(names, {**state, **x})
    return result[0], {n[len("next_"):]: v for n, v in zip(names[1:], result[1:])}

if os.path.exists(f"{d}/stream_encoder.onnx"):
    senc, sdec = load("stream_encoder"), load("stream_decoder")
    delay = json.load(open(f"{d}/stream_encoder.onnx.json"))["delay_chunks"]
    es, ds, codes, audio = zero_state(senc), zero_state(sdec), [], []
    for i, chunk in enumerate(np.load(f"{d}/chunks.npz")["chunks"]):
        c, es = step(senc, es, chunk=chunk)
        if i >= delay:
            y, ds = step(sdec, ds, codes=c)
            codes.append(c)
            audio.append(y)
    out["stream/codes"], out["stream/audio"] = np.stack(codes), np.stack(audio)
np.savez(f"{d}/out.npz", **out)
assert not {"jax", "jax_codec", "flax"} & set(sys.modules), "imported jax/jax_codec/flax"
""",
    # The LiteRT interpreter and NumPy alone, at the one shape the artifacts were made for.
    "tflite": r"""
import json, os, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
d = sys.argv[1]
load = lambda n: Interpreter(model_path=f"{d}/{n}.tflite").get_signature_runner()
inputs, out = np.load(f"{d}/in.npz"), {}
enc, dec = load("encoder"), load("decoder")
codes = enc(audio=inputs["b2n3"])
out["b2n3/audio"] = dec(**codes)["audio"]
for name, c in codes.items():
    out[f"b2n3/codes{int(name[len('codes_'):])}"] = c
if os.path.exists(f"{d}/stream_encoder.tflite"):
    senc, sdec = load("stream_encoder"), load("stream_decoder")
    zero_state = lambda r: {n: np.zeros(a["shape"], a["dtype"])
                            for n, a in r.get_input_details().items() if n.startswith("state_")}
    next_state = lambda o: {n[len("next_"):]: v for n, v in o.items() if n.startswith("next_")}
    delay = json.load(open(f"{d}/stream_encoder.tflite.json"))["delay_chunks"]
    es, ds, codes, audio = zero_state(senc), zero_state(sdec), [], []
    for i, chunk in enumerate(np.load(f"{d}/chunks.npz")["chunks"]):
        o = senc(chunk=chunk, **es)
        es = next_state(o)
        if i >= delay:
            y = sdec(codes=o["codes"], **ds)
            ds = next_state(y)
            codes.append(o["codes"])
            audio.append(y["audio"])
    out["stream/codes"], out["stream/audio"] = np.stack(codes), np.stack(audio)
np.savez(f"{d}/out.npz", **out)
assert not {"jax", "jax_codec", "flax", "tensorflow"} & set(sys.modules), "imported jax/tf"
""",
}

# What each runner needs besides NumPy.
RUNTIME = {"stablehlo": (), "onnx": ("onnxruntime",), "tflite": ("ai_edge_litert",)}
# What exporting needs.
CONVERTER = {"stablehlo": (), "onnx": ("jax2onnx", "onnx"), "tflite": ("tensorflow",)}


def require(fmt: str) -> None:
    """Skips without the format's packages (installed by the `export` extra and .ci/run);
    fails under CI, which installs them."""
    missing = []
    for module in (*CONVERTER[fmt], *RUNTIME[fmt]):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        message = f"--format {fmt} needs {', '.join(missing)} (docs/export.md: Installing)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; CI installs them")
        pytest.skip(message)


@pytest.fixture(scope="module")
def loaded(runlocal_codec):
    codec, params = runlocal_codec
    return LoadedCodec(codec, louder(params), load_config("configs/base.py:runlocal"))


def offline_reference(loaded, directory) -> dict:
    """Two inputs (`directory/in.npz`: batch 1 x 2 blocks, batch 2 x 3 blocks; the symbolic
    batch and length take both) and what the model makes of them: the codes and audio of
    `Codec.encode`/`decode`, and the audio of the first 2 levels of one."""
    codec, params = loaded.codec, loaded.params
    L, rate = codec.length_multiple, codec.sample_rate
    music = lambda n, seed: SyntheticMusic(rate, n * L / rate, seed=seed)[0][: n * L]
    inputs = {"b1n2": np.stack([music(2, 1)]), "b2n3": np.stack([music(3, 2), music(3, 3)])}
    inputs = {k: v[..., None].astype(np.float32) for k, v in inputs.items()}
    encode = jax.jit(lambda x: codec.apply(params, x, method=codec.encode))
    decode = jax.jit(lambda c: codec.apply(params, c, method=codec.decode))
    want = {}
    for name, x in inputs.items():
        codes = encode(jnp.asarray(x))
        want.update({f"{name}/codes{i}": np.asarray(c) for i, c in enumerate(codes)})
        want[f"{name}/audio"] = np.asarray(decode(codes))
        if name == "b2n3":
            want[f"{name}/audio2"] = np.asarray(decode(codes[:2]))
    np.savez(directory / "in.npz", **inputs)
    return want


@pytest.fixture(scope="module")
def reference(loaded, tmp_path_factory):
    """`offline_reference`'s inputs and outputs, and stream chunks (`DIR/chunks.npz`) with the
    codes and audio of `StreamingEncoder`/`StreamingDecoder`, chunk by chunk."""
    codec, params = loaded.codec, loaded.params
    d = tmp_path_factory.mktemp("export_inputs")
    want = offline_reference(loaded, d)
    enc = streaming.StreamingEncoder(codec, params, STREAM_CHUNK)
    dec = streaming.StreamingDecoder(codec, params, STREAM_CHUNK)
    x = SyntheticMusic(44100, 0.4, seed=5)[0][None]
    chunks = np.stack(list(streaming.stream_chunks(codec, x, STREAM_CHUNK, enc.delay)))[..., None]
    codes, audio = [], []
    for chunk in chunks:
        c = enc.push(chunk[..., 0])
        if c is not None:
            codes.append(np.asarray(c))
            audio.append(np.asarray(dec.push(c))[..., None])
    assert enc.delay > 0 and len(codes) == len(chunks) - enc.delay // STREAM_CHUNK
    want["stream/codes"], want["stream/audio"] = np.stack(codes), np.stack(audio)
    np.savez(d / "chunks.npz", chunks=chunks.astype(np.float32))
    return d, want


def export_all(loaded, inputs, fmt, tmp_path, stream=True, **fixed) -> dict:
    """Exports the parts the runners read to `tmp_path`, beside links to the `inputs`
    directory's files; returns the metadata by file name. `fixed`: `batch` and `blocks`."""
    for name in os.listdir(inputs):
        os.symlink(inputs / name, tmp_path / name)
    parts = [("encoder", None, fixed), ("decoder", None, fixed)]
    if not fixed:
        parts.append(("decoder", 2, {}))
    if stream:
        parts += [(p, None, {"chunk_frames": STREAM_CHUNK}) for p in STREAM_PARTS]
    metas = {}
    for part, k, kw in parts:
        name = f"{part}{k or ''}"
        path = str(tmp_path / f"{name}.{fmt}")
        meta = export_file(loaded, part, path, k, fmt=fmt, **kw)
        assert json.load(open(path + ".json")) == {k_: v for k_, v in meta.items() if k_ != "bytes"}
        assert meta["model_fingerprint"] == loaded.fingerprint.hex()
        assert meta["format"] == fmt and meta["n_quantizers"] == (k or loaded.codec.num_quantizers)
        metas[name] = meta
    return metas


def run_and_compare(fmt: str, directory, want: dict, keys) -> None:
    """Runs `fmt`'s runner on `directory` in a fresh interpreter; its outputs at `keys` equal
    `want`: codes identical, audio within 1e-4."""
    r = subprocess.run(
        [sys.executable, "-c", RUNNERS[fmt], str(directory)],
        env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.load(directory / "out.npz")
    assert sorted(out.files) == sorted(keys)
    for key in keys:
        if "codes" in key:
            np.testing.assert_array_equal(out[key], want[key], err_msg=key)
        else:
            assert np.abs(want[key]).max() > 0.01  # a real signal, not silence
            np.testing.assert_allclose(out[key], want[key], atol=1e-4, err_msg=key)


def test_stablehlo_parts_run_with_jax_alone_and_equal_the_model(loaded, reference, tmp_path):
    metas = export_all(loaded, reference[0], "stablehlo", tmp_path)
    assert metas["encoder"]["length_multiple"] == loaded.codec.length_multiple == 2048
    enc = streaming.StreamingEncoder(loaded.codec, loaded.params, STREAM_CHUNK)
    assert metas["stream_encoder"]["delay_chunks"] == enc.delay // STREAM_CHUNK
    assert metas["stream_encoder"]["chunk_samples"] == STREAM_CHUNK * loaded.codec.hop_length
    assert metas["stream_decoder"]["delay_chunks"] == 0 and metas["stream_decoder"]["state"]
    run_and_compare("stablehlo", tmp_path, reference[1], list(reference[1]))


def test_onnx_parts_run_with_onnxruntime_alone_and_equal_the_model(loaded, reference, tmp_path):
    require("onnx")
    metas = export_all(loaded, reference[0], "onnx", tmp_path)
    assert metas["decoder2"]["input_names"] == ["codes_0", "codes_1"]
    assert metas["decoder2"]["inputs"] == ["int32[b,n]", "int32[b,2*n]"]
    s = metas["stream_encoder"]
    assert s["input_names"][-1] == "chunk" and s["output_names"][0] == "codes"
    assert len(s["state"]) == len(s["input_names"]) - 1 > 1
    run_and_compare("onnx", tmp_path, reference[1], list(reference[1]))


def test_tflite_parts_run_with_litert_alone_and_equal_the_model(loaded, reference, tmp_path):
    require("tflite")
    metas = export_all(loaded, reference[0], "tflite", tmp_path, stream=False, batch=2, blocks=3)
    assert (
        metas["encoder"]["inputs"] == ["float32[2,6144,1]"]
        and not metas["encoder"]["symbolic_dims"]
    )
    keys = [k for k in reference[1] if k.startswith("b2n3/") and k != "b2n3/audio2"]
    run_and_compare("tflite", tmp_path, reference[1], keys)


@pytest.mark.slow
def test_imported_preset_dac44k_exports_equal_the_model(tmp_path):
    """DAC 44.1 kHz (configs/dac_44khz.py, random weights; non-causal, so no stream parts):
    StableHLO and ONNX encoder and decoders in fresh interpreters equal the model."""
    from jax_codec.models.codec import build_codec

    config = load_config("configs/dac_44khz.py")
    codec = build_codec(config.model)
    x = jnp.zeros((1, 2 * codec.length_multiple, 1))
    loaded = LoadedCodec(codec, louder(jax.jit(codec.init)(jax.random.key(0), x)), config)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    want = offline_reference(loaded, inputs)
    for fmt in ("stablehlo", "onnx"):
        if fmt == "onnx":
            require("onnx")
        (tmp_path / fmt).mkdir()
        metas = export_all(loaded, inputs, fmt, tmp_path / fmt, stream=False)
        assert metas["encoder"]["model"] == "dac_44khz" and metas["encoder"]["hop_length"] == 512
        run_and_compare(fmt, tmp_path / fmt, want, list(want))


@pytest.mark.slow
def test_tflite_stream_steps_equal_the_streaming_api(loaded, reference, tmp_path):
    require("tflite")
    export_all(loaded, reference[0], "tflite", tmp_path, batch=2, blocks=3)
    keys = [k for k in reference[1] if k.startswith(("b2n3/", "stream/")) and k != "b2n3/audio2"]
    run_and_compare("tflite", tmp_path, reference[1], keys)


def test_bad_export_requests_give_clear_errors(loaded, tmp_path, capsys, monkeypatch):
    with pytest.raises(ExportError, match=r"--n_quantizers must be in \[1, 4\], got 5"):
        export_part(loaded, "encoder", 5)
    with pytest.raises(ExportError, match="unknown part 'stream'; choose one of"):
        export_part(loaded, "stream")
    with pytest.raises(ExportError, match="needs --chunk_frames N >= 1, got None"):
        export_part(loaded, "stream_encoder")
    centred = LoadedCodec(
        codec=loaded.codec.clone(causal=False), params=loaded.params, config=loaded.config
    )
    with pytest.raises(ExportError, match="non-causal .* cannot stream; export its encoder"):
        export_part(centred, "stream_decoder", chunk_frames=4)
    with pytest.raises(ExportError, match="non-causal .* cannot stream"):
        export_file(centred, "stream_encoder", str(tmp_path / "s.onnx"), fmt="onnx")
    with pytest.raises(ExportError, match="unknown format 'pt'; choose one of stablehlo, onnx"):
        export_file(loaded, "encoder", str(tmp_path / "enc.pt"), fmt="pt")
    # Before any model loads (the config named cannot load): the output's problems.
    model = ["--config", "configs/no_such_preset.py", "--random_init", "--part", "encoder"]
    existing = tmp_path / "enc.stablehlo"
    existing.write_bytes(b"keep me")
    fresh = f"--output={tmp_path / 'enc.out'}"
    # Neither converter imports (as where the `export` extra is not installed).
    monkeypatch.setitem(sys.modules, "jax2onnx", None)
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    cases = (
        ([f"--output={tmp_path / 'nodir' / 'enc.stablehlo'}"], "does not exist"),
        ([f"--output={existing}"], "exists; pass --overwrite"),
        ([fresh, "--format=onnx"], "--format onnx needs jax2onnx and onnx (jax2onnx is missing)"),
        ([fresh, "--format=tflite", "--blocks=2"], "--format tflite needs TensorFlow"),
        ([fresh, "--format=tflite"], "LiteRT needs fixed shapes: pass --blocks N"),
        ([fresh, "--format=onnx", "--platforms=cuda"], "--platforms applies to --format stablehlo"),
        ([fresh, "--batch=2"], "--batch fixes the batch of a stream part or, with --blocks"),
        ([fresh, "--blocks=0"], "--blocks must be >= 1, got 0"),
    )
    for extra, message in cases:
        assert main(["export", *model, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(SystemExit):  # argparse: the choices are listed
        main(["export", *model[:3], "--part", "everything", f"--output={existing}"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", *model, "--format", "pt", f"--output={existing}"])
    assert "invalid choice: 'pt'" in capsys.readouterr().err


def test_export_command_writes_artifact_and_metadata(tmp_path, capsys):
    out = str(tmp_path / "dec.stablehlo")
    argv = ["export", "--config", "configs/base.py:runlocal", "--random_init", "--part"]
    assert main([*argv, "decoder", "--n_quantizers", "2", "--output", out, "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["part"] == "decoder" and meta["n_quantizers"] == 2 and meta["bytes"] > 0
    assert meta["inputs"] == ["int32[b,n]", "int32[b,2*n]"]
    assert meta["outputs"] == ["float32[b,2048*n,1]"]
    assert os.path.getsize(out) == meta["bytes"] and os.path.exists(out + ".json")
    assert sorted(os.listdir(tmp_path)) == ["dec.stablehlo", "dec.stablehlo.json"]  # no temp
