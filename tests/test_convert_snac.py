"""SNAC import: the converted presets equal PyTorch SNAC (`snac` package) exactly.

Each reference `snac.SNAC(**release hyperparameters)` is built with random weights (no
download), perturbed so that every tensor matters (biases, Snake alphas, weight-norm gains,
LayerNorm weights), converted in memory, and run beside ours on the same ~1 s of audio: codes
identical at every level, decoded audio within 1e-4 (fp32).

Noise: SNAC's decoder draws `torch.randn` in every NoiseBlock at every decode; ours draws
nothing unless given a "noise" RNG (zero noise: deterministic). Both are checked: zero noise on
both sides (torch.randn patched to zeros), and identical noise (ours draws it from an RNG and
records it with `sow`; torch.randn is patched to return exactly those arrays, in order).
Needs torch and snac; skipped without them.
"""

import contextlib
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
snac = pytest.importorskip("snac")

from conftest import subprocess_env  # noqa: E402
from test_convert import _music, _perturb  # noqa: E402

from jax_codec.config import load_config  # noqa: E402
from jax_codec.convert import ConversionError, convert_state_dict  # noqa: E402
from jax_codec.convert.core import _snac_kwargs  # noqa: E402
from jax_codec.models.codec import build_codec  # noqa: E402

TOL = 1e-4

PRESETS = [
    # 24 kHz: the 32 kHz layers without local attention and with 3 levels; slow suite.
    pytest.param("configs/snac_24khz.py", marks=pytest.mark.slow),
    "configs/snac_32khz.py",
    # The same tensors as 32 kHz (only the rate and attention window differ): slow suite.
    pytest.param("configs/snac_44khz.py", marks=pytest.mark.slow),
]


def _snac_model(model_config, seed: int = 0):
    torch.manual_seed(seed)
    model = snac.SNAC(**_snac_kwargs(model_config)).eval()
    _perturb(model, seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # LayerNorm gains (torch's init: ones)
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        # Random codebooks give the same few codes everywhere (the random encoder's output
        # barely varies in direction): draw each level's codes around its own projected
        # inputs on other audio, as a trained codebook would sit, so that codes vary.
        x = model.preprocess(torch.from_numpy(_music(2.0, model.sampling_rate, seed=9))[None, None])
        residual = model.encoder(x)
        for vq in model.quantizer.quantizers:
            pooled = torch.nn.functional.avg_pool1d(residual, vq.stride, vq.stride)
            z_e = vq.in_proj(pooled)[0].T  # [frames, d]
            pick = torch.randint(0, z_e.shape[0], (vq.codebook_size,), generator=g)
            spread = 0.5 * z_e.std(dim=0, keepdim=True)
            vq.codebook.weight.copy_(
                z_e[pick] + spread * torch.randn(vq.codebook.weight.shape, generator=g)
            )
            residual = residual - vq(residual)[0]
    return model


@contextlib.contextmanager
def _torch_noise(arrays):
    """torch.randn returns `arrays` ([B, T, 1] each, channels-last) in order, as [B, 1, T]."""
    queue = list(arrays)
    real = torch.randn

    def fake(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else size
        noise = np.asarray(queue.pop(0)).transpose(0, 2, 1)
        assert noise.shape == shape, (noise.shape, shape)
        return torch.from_numpy(np.array(noise)).to(kwargs.get("dtype"))

    torch.randn = fake
    try:
        yield
    finally:
        torch.randn = real
    assert not queue, f"{len(queue)} noise arrays were not used"


class _Ours:
    """Jitted encode / decode (without and with noise) of one preset's codec."""

    def __init__(self, config):
        self.codec = codec = build_codec(config.model, dtype="float32")
        self.encode = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode))
        self.decode = jax.jit(lambda p, c: codec.apply(p, c, method=codec.decode))

        def noisy(p, c, key):
            y, state = codec.apply(
                p, c, method=codec.decode, rngs={"noise": key}, mutable=["intermediates"]
            )
            blocks = state["intermediates"]["decoder"]
            names = sorted(blocks, key=lambda n: int(n.rsplit("_", 1)[1]))
            return y, [blocks[n]["NoiseBlock_0"]["noise"][0] for n in names]

        self.decode_noisy = jax.jit(noisy)


@pytest.fixture(scope="module", params=PRESETS)
def snac_converted(request):
    torch.set_num_threads(2)
    config = load_config(request.param)
    model = _snac_model(config.model)
    params = convert_state_dict("snac", model.state_dict(), config)
    return request.param, config, model, params


def test_snac_preset_matches_pytorch(snac_converted):
    spec, config, model, params = snac_converted
    m = config.model
    ours = _Ours(config)
    audio = _music(1.0, m.sample_rate)  # not a whole number of SNAC's padding blocks
    with torch.no_grad():
        codes_ref = [c[0].numpy() for c in model.encode(torch.from_numpy(audio)[None, None])]
    codes = ours.encode(params, jnp.asarray(audio)[None, :, None])
    assert len(codes) == len(codes_ref) == len(m.vq_strides)
    for level, (c, c_ref) in enumerate(zip(codes, codes_ref, strict=True)):
        c = np.asarray(c)[0]
        assert c.shape == c_ref.shape
        assert int((c != c_ref).sum()) == 0, f"level {level}: {(c != c_ref).sum()} codes differ"
    # Varied codes at every level: the comparison exercises many codebook entries.
    for c in codes:
        assert len(np.unique(np.asarray(c))) > 0.5 * c.shape[1]

    torch_codes = [torch.from_numpy(c[None].astype(np.int64)) for c in codes_ref]
    # 1) Zero noise on both sides.
    y = np.asarray(ours.decode(params, codes))[0, :, 0]
    with (
        torch.no_grad(),
        _torch_noise(
            [np.zeros((1, n, 1), np.float32) for n in _noise_lengths(ours.codec, codes_ref)]
        ),
    ):
        y_ref = model.decode(torch_codes)[0, 0].numpy()
    assert y.shape == y_ref.shape
    diff = float(np.max(np.abs(y - y_ref)))
    assert diff <= TOL, f"zero noise: max abs diff {diff}"
    # 2) The same random noise on both sides.
    y_noisy, noise = ours.decode_noisy(params, codes, jax.random.key(7))
    y_noisy = np.asarray(y_noisy)[0, :, 0]
    with torch.no_grad(), _torch_noise(noise):
        y_ref_noisy = model.decode(torch_codes)[0, 0].numpy()
    diff_noisy = float(np.max(np.abs(y_noisy - y_ref_noisy)))
    assert diff_noisy <= TOL, f"injected noise: max abs diff {diff_noisy}"
    assert np.max(np.abs(y_noisy - y)) > 100 * TOL  # the noise does change the output
    print(f"{spec}: max abs diff {diff:.2e} (zero noise), {diff_noisy:.2e} (same noise)")


def _noise_lengths(codec, codes_ref) -> list[int]:
    """Samples at the output of each decoder block (where SNAC draws its noise)."""
    frames = codes_ref[-1].shape[-1] * codec.vq_strides[-1]
    out, n = [], frames
    for s in codec.decoder_strides:
        n *= s
        out.append(n)
    return out


def test_snac_padding_matches_preprocess(snac_converted):
    """Our input padding is SNAC's `preprocess`: hop * lcm(vq_strides[0], attn_window)."""
    _, config, model, _ = snac_converted
    codec = build_codec(config.model)
    for n in (1, codec.length_multiple, codec.length_multiple + 1):
        padded = model.preprocess(torch.zeros(1, 1, n)).shape[-1]
        assert padded == -(-n // codec.length_multiple) * codec.length_multiple


def test_mismatched_snac_preset_names_the_tensor(snac_converted):
    spec, config, model, _ = snac_converted
    other = "configs/snac_32khz.py" if "24khz" in spec else "configs/snac_24khz.py"
    with pytest.raises(ConversionError, match=r"^tensor encoder\.block\.0\.\S+ has shape"):
        convert_state_dict("snac", model.state_dict(), load_config(other))
    # 32 and 44.1 kHz share their tensors: only SNAC's config.json tells them apart.
    release = dict(_snac_kwargs(config.model), sampling_rate=12345)
    with pytest.raises(ConversionError, match=r"config\.json has sampling_rate=12345"):
        convert_state_dict("snac", model.state_dict(), config, metadata=release)
    # DAC and SNAC weights are not interchangeable.
    with pytest.raises(ConversionError, match="has no dac counterpart"):
        convert_state_dict("dac", model.state_dict(), config)


def _run_convert(*args):
    return subprocess.run(
        [sys.executable, "-m", "jax_codec.convert", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
    )


def test_snac_convert_cli_round_trip(tmp_path):
    """A release layout (pytorch_model.bin + config.json) -> CLI -> load_codec: same codes."""
    from jax_codec.inference import load_codec

    spec = "configs/snac_32khz.py:tiny"
    config = load_config(spec)
    model = _snac_model(config.model, seed=3)
    release = tmp_path / "snac_release"
    release.mkdir()
    torch.save(model.state_dict(), release / "pytorch_model.bin")
    (release / "config.json").write_text(json.dumps(_snac_kwargs(config.model)))
    out = tmp_path / "converted"
    r = _run_convert(
        "--from=snac",
        f"--weights={release / 'pytorch_model.bin'}",
        f"--config={spec}",
        f"--output={out}",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "converted.json").read_text())["source"] == "snac"
    codec, params, loaded = load_codec(str(out))
    assert loaded.model.arch == "snac" and loaded.model.snac.attn_window == 32
    audio = _music(1.0, config.model.sample_rate, seed=2)
    with torch.no_grad():
        codes_ref = [c[0].numpy() for c in model.encode(torch.from_numpy(audio)[None, None])]
    codes = jax.jit(lambda p, a: codec.apply(p, a, method=codec.encode))(
        params, jnp.asarray(audio)[None, :, None]
    )
    for c, c_ref in zip(codes, codes_ref, strict=True):
        np.testing.assert_array_equal(np.asarray(c)[0], c_ref)

    # The release's config.json disagrees with the preset: one line naming the field.
    (release / "config.json").write_text(
        json.dumps(dict(_snac_kwargs(config.model), sampling_rate=44100))
    )
    r = _run_convert(
        "--from=snac",
        f"--weights={release / 'pytorch_model.bin'}",
        f"--config={spec}",
        f"--output={tmp_path / 'bad'}",
    )
    assert r.returncode == 2
    assert r.stderr.startswith("error: the checkpoint's SNAC config.json has sampling_rate=44100")
    assert "Traceback" not in r.stderr and not (tmp_path / "bad").exists()


@pytest.mark.slow  # three compiled SNAC forwards; the presets' equivalence stays in default
def test_noise_is_deterministic_unless_asked_for():
    """No noise RNG: zero noise (deterministic). A "noise" RNG, or training's "dropout"
    stream, draws it; the key decides it."""
    config = load_config("configs/snac_32khz.py:tiny")
    codec = build_codec(config.model, dtype="float32")
    x = 0.3 * jax.random.normal(jax.random.key(0), (1, codec.length_multiple, 1))
    # Converted weights: compiling `codec.init` would take longer than the whole test.
    params = convert_state_dict("snac", _snac_model(config.model).state_dict(), config)
    codes = jax.jit(lambda p: codec.apply(p, x, method=codec.encode))(params)
    quiet_decode = jax.jit(lambda p: codec.apply(p, codes, method=codec.decode))
    noisy_decode = jax.jit(
        lambda p, k: codec.apply(p, codes, method=codec.decode, rngs={"noise": k})
    )
    evaluate = jax.jit(lambda p: codec.apply(p, x).audio)
    train = jax.jit(lambda p, k: codec.apply(p, x, train=True, rngs={"dropout": k}).audio)

    quiet = np.asarray(quiet_decode(params))
    np.testing.assert_array_equal(quiet, np.asarray(quiet_decode(params)))
    np.testing.assert_array_equal(np.asarray(evaluate(params)), quiet)
    noisy = np.asarray(noisy_decode(params, jax.random.key(2)))
    np.testing.assert_array_equal(noisy, np.asarray(noisy_decode(params, jax.random.key(2))))
    assert np.abs(noisy - quiet).max() > 0
    assert np.abs(noisy - np.asarray(noisy_decode(params, jax.random.key(3)))).max() > 0
    a, b = (np.asarray(train(params, jax.random.key(k))) for k in (4, 5))
    assert np.abs(a - b).max() > 0 and np.abs(a - quiet).max() > 0


@pytest.mark.slow
def test_snac_windowed_paths_equal_whole_signal():
    """Long files go through windows (`chunked_encode` / `chunked_decode`, as `compress` and
    `decompress` do): with SNAC's attention the windows must start on the attention grid and
    the context must cover the attention window; then the codes and audio equal the
    whole-signal ones."""
    from jax_codec.inference import chunked
    from jax_codec.inference import streaming as st

    torch.set_num_threads(2)
    config = load_config("configs/snac_32khz.py")
    params = convert_state_dict("snac", _snac_model(config.model).state_dict(), config)
    ours = _Ours(config)
    codec = ours.codec
    assert st.block_frames(codec) == 32  # lcm(8, 4, 2, 1, attention window 32)
    # Windows and the whole signal round differently in the last bit (other shapes, other
    # kernels), so a code sitting on an fp32 near-tie may flip, with the finer levels of that
    # frame after it: allow that, not more. Misaligned windows change ~20% of the codes.
    audio = _music(4.0, config.model.sample_rate, seed=6)
    whole = ours.encode(params, jnp.asarray(audio)[None, :, None])
    windowed = chunked.chunked_encode(codec, params, audio[None], window_frames=32)
    differ = total = 0
    for w, c in zip(windowed, whole, strict=True):
        assert w.shape == np.asarray(c).shape
        differ += int(np.sum(w != np.asarray(c)))
        total += w.size
    assert differ <= 0.02 * total, (differ, total)
    # Decoding in windows: the same codes give the same audio.
    y_whole = np.asarray(ours.decode(params, whole))[0, : len(audio), 0]
    whole_np = [np.asarray(c) for c in whole]
    y = chunked.chunked_decode(codec, params, whole_np, length=len(audio), window_frames=32)[0]
    assert np.max(np.abs(y - y_whole)) <= 1e-5
