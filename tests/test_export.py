"""Export: serialized StableHLO parts that run without jax_codec, equal to the model."""

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
from jax_codec.export import ExportError, export_part
from jax_codec.export.stablehlo import export_file
from jax_codec.inference import streaming
from jax_codec.inference.api import LoadedCodec

# Runs in a fresh interpreter: JAX and NumPy only (the host a deployer has).
RUNNER = r"""
import sys
import jax, numpy as np
from jax import export
enc = export.deserialize(open(sys.argv[1], "rb").read())
dec = export.deserialize(open(sys.argv[2], "rb").read())
dec2 = export.deserialize(open(sys.argv[3], "rb").read())
inputs = np.load(sys.argv[4])
out = {}
for name in sorted(inputs.files):
    codes = enc.call(inputs[name])
    out[name + "/audio"] = np.asarray(dec.call(codes))
    if name == "b2n3":  # the 2-level decoder at one shape
        out[name + "/audio2"] = np.asarray(dec2.call(codes[:2]))
    for i, c in enumerate(codes):
        out[f"{name}/codes{i}"] = np.asarray(c)
np.savez(sys.argv[5], **out)
assert "jax_codec" not in sys.modules and "flax" not in sys.modules, "imported jax_codec/flax"
"""


@pytest.fixture(scope="module")
def loaded(runlocal_codec):
    codec, params = runlocal_codec
    return LoadedCodec(codec, louder(params), load_config("configs/base.py:runlocal"))


def test_exported_parts_run_without_jax_codec_and_equal_the_model(loaded, tmp_path):
    codec, params = loaded.codec, loaded.params
    paths = {}
    for part, k in (("encoder", None), ("decoder", None), ("decoder", 2)):
        path = str(tmp_path / f"{part}{k or ''}.stablehlo")
        meta = export_file(loaded, part, path, k)
        paths[(part, k)] = path
        assert json.load(open(path + ".json")) == {k_: v for k_, v in meta.items() if k_ != "bytes"}
        assert meta["model_fingerprint"] == loaded.fingerprint.hex()
        assert meta["n_quantizers"] == (k or codec.num_quantizers)
        assert meta["length_multiple"] == codec.length_multiple == 2048
    L = codec.length_multiple
    # Symbolic batch and length: two shapes through the same artifacts.
    inputs = {
        "b1n2": np.stack([SyntheticMusic(44100, 2 * L / 44100, seed=1)[0][: 2 * L]])[..., None],
        "b2n3": np.stack(
            [SyntheticMusic(44100, 3 * L / 44100, seed=s)[0][: 3 * L] for s in (2, 3)]
        )[..., None],
    }
    np.savez(tmp_path / "in.npz", **{k: v.astype(np.float32) for k, v in inputs.items()})
    r = subprocess.run(
        [
            sys.executable, "-c", RUNNER, paths[("encoder", None)], paths[("decoder", None)],
            paths[("decoder", 2)], str(tmp_path / "in.npz"), str(tmp_path / "out.npz"),
        ],
        env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    encode = jax.jit(lambda x: codec.apply(params, x, method=codec.encode))
    decode = jax.jit(lambda c: codec.apply(params, c, method=codec.decode))
    for name, x in inputs.items():
        codes = encode(jnp.asarray(x, jnp.float32))
        for i, c in enumerate(codes):
            np.testing.assert_array_equal(out[f"{name}/codes{i}"], np.asarray(c))
        for key, k in (("audio", None), ("audio2", 2)):
            if f"{name}/{key}" not in out:
                continue
            y = np.asarray(decode(codes[:k] if k else codes))
            assert np.abs(y).max() > 0.01  # a real signal, not silence
            np.testing.assert_allclose(out[f"{name}/{key}"], y, atol=1e-4)
    assert "b2n3/audio2" in out


# The real-time loop of a host with JAX alone: zero state from the artifact's own signature,
# each step's state passed back, the encoder's first `delay_chunks` outputs dropped.
STREAM_RUNNER = r"""
import json, sys
import jax, numpy as np
from jax import export
enc = export.deserialize(open(sys.argv[1], "rb").read())
dec = export.deserialize(open(sys.argv[2], "rb").read())
delay = json.load(open(sys.argv[1] + ".json"))["delay_chunks"]

def zero_state(exp):
    leaves = [np.zeros(a.shape, a.dtype) for a in exp.in_avals]
    (state, _), _ = jax.tree.unflatten(exp.in_tree, leaves)
    return state

chunks = np.load(sys.argv[3])["chunks"]
es, ds, codes, audio = zero_state(enc), zero_state(dec), [], []
for i, chunk in enumerate(chunks):
    c, es = enc.call(es, chunk)
    if i >= delay:
        y, ds = dec.call(ds, c)
        codes.append(np.asarray(c))
        audio.append(np.asarray(y))
np.savez(sys.argv[4], codes=np.stack(codes), audio=np.stack(audio))
assert "jax_codec" not in sys.modules and "flax" not in sys.modules
"""


def test_exported_stream_steps_equal_the_streaming_api(loaded, tmp_path):
    codec, params = loaded.codec, loaded.params
    n = 3  # not a divisor of the 4-frame block: the encoder carries a remainder and a delay
    paths = []
    for part in ("stream_encoder", "stream_decoder"):
        path = str(tmp_path / f"{part}.stablehlo")
        meta = export_file(loaded, part, path, chunk_frames=n)
        assert meta["chunk_samples"] == n * codec.hop_length and meta["state"]
        paths.append(path)
    enc = streaming.StreamingEncoder(codec, params, n)
    dec = streaming.StreamingDecoder(codec, params, n)
    assert meta["delay_chunks"] == 0 and json.load(open(paths[0] + ".json"))["delay_chunks"] == (
        enc.delay // n
    )
    x = SyntheticMusic(44100, 0.4, seed=5)[0][None]
    chunks = np.stack(list(streaming.stream_chunks(codec, x, n, enc.delay)))[..., None]
    np.savez(tmp_path / "chunks.npz", chunks=chunks.astype(np.float32))
    r = subprocess.run(
        [sys.executable, "-c", STREAM_RUNNER, *paths, str(tmp_path / "chunks.npz"),
         str(tmp_path / "out.npz")],
        env=subprocess_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    want_codes, want_audio = [], []
    for chunk in chunks:
        c = enc.push(chunk[..., 0])
        if c is not None:
            want_codes.append(np.asarray(c))
            want_audio.append(np.asarray(dec.push(c)))
    assert enc.delay > 0 and len(want_codes) == len(out["codes"]) == len(chunks) - enc.delay // n
    np.testing.assert_array_equal(out["codes"], np.stack(want_codes))
    want = np.stack(want_audio)[..., None]
    assert np.abs(want).max() > 0.01
    np.testing.assert_allclose(out["audio"], want, atol=1e-4)


def test_bad_export_requests_give_clear_errors(loaded, tmp_path, capsys):
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
    # Before any model loads (the config named cannot load): the output's problems.
    model = ["--config", "configs/no_such_preset.py", "--random_init", "--part", "encoder"]
    existing = tmp_path / "enc.stablehlo"
    existing.write_bytes(b"keep me")
    cases = (
        ([f"--output={tmp_path / 'nodir' / 'enc.stablehlo'}"], "does not exist"),
        ([f"--output={existing}"], "exists; pass --overwrite"),
    )
    for extra, message in cases:
        assert main(["export", *model, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(SystemExit):  # argparse: the choices are listed
        main(["export", *model[:3], "--part", "everything", f"--output={existing}"])
    assert "invalid choice: 'everything'" in capsys.readouterr().err


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
