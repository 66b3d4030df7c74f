"""bf16 compute (`model.dtype=bfloat16`) on CPU: the dtype policy, train steps, encode/decode.

The policy (docs/scale-out.md): parameters, optimizer state, losses, STFTs, every reduction and
the quantizer stay float32; convolutions and matmuls (which accumulate in float32) and the
elementwise glue between them run in bfloat16. Random-init models are badly conditioned (a
near-silent decoder, codes with small margins), so the bounds here are for them; a trained
model agrees more closely (benchmarks/bf16_cpu.py, benchmarks/README.md).
"""

import collections
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import louder
from jax.extend import core as jax_core
from test_train_step import music_batch, small_config

from jax_codec.data.synthetic import SyntheticMusic
from jax_codec.training.step import Trainer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
from bf16_cpu import snr_db  # noqa: E402  (the benchmark's measure, so the numbers compare)

# A train step small enough to trace in seconds, with every part that bf16 could break: Snake,
# weight norm, transposed convs, the quantizer, all three discriminators, mel and STFT losses.
TINY = {
    "model.encoder_width": "4",
    "model.encoder_strides": "(4, 8)",
    "model.decoder_strides": "(8, 4)",
    "model.latent_dim": "16",
    "model.decoder_width": "16",
    "model.dilations": "(1, 3)",
    "model.vq_strides": "(2, 1)",
    "model.codebook_size": "64",
    "discriminator.kinds": '("mpd", "msd", "mrd")',
    "discriminator.periods": "(2,)",
    "discriminator.msd_rates": "(1,)",
    "loss.mel_window_lengths": "(64, 256)",
    "loss.mel_n_mels": "(10, 40)",
    "train.batch_size": "2",
    "train.segment_seconds": "0.05",
}

# The only primitives that may see a bfloat16 operand in the train step: layout, elementwise
# add/multiply/select/compare (one rounding each), and convolutions and matmuls, which XLA
# accumulates in float32 on CPU, GPU and TPU and round once. Everything else (reductions, FFTs,
# logs, sin, division, argmax) must run in float32. A new entry needs a reason.
BF16_OK = {
    "add",
    "add_any",
    "broadcast_in_dim",
    "concatenate",
    "conv_general_dilated",
    "convert_element_type",
    "dot_general",
    "gather",
    "ge",
    "jit",
    "mul",
    "pad",
    "reshape",
    "rev",
    "select_n",
    "slice",
    "split",
    "squeeze",
    "transpose",
}


def _tiny_trainer(dtype: str) -> Trainer:
    return Trainer(small_config(**TINY, **{"model.dtype": dtype}))


def _equations(jaxpr):
    """Every equation of `jaxpr` and of the jaxprs nested in it (jit, custom_vjp, cond...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                if isinstance(sub, jax_core.ClosedJaxpr):
                    yield from _equations(sub.jaxpr)
                elif isinstance(sub, jax_core.Jaxpr):
                    yield from _equations(sub)


def test_bf16_step_keeps_params_reductions_and_losses_in_float32():
    trainer = _tiny_trainer("bfloat16")
    state = jax.eval_shape(trainer.init_state, jax.random.key(0))
    floats = {str(x.dtype) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)}
    assert floats == {"float32"}, floats  # params, Adam moments, code usage
    batch = jax.ShapeDtypeStruct(trainer.batch_shape(2), jnp.float32)
    jaxpr = jax.make_jaxpr(trainer.train_step)(state, batch, jax.random.key(7)).jaxpr
    bf16 = collections.Counter(
        eqn.primitive.name
        for eqn in _equations(jaxpr)
        if any(getattr(v.aval, "dtype", None) == jnp.bfloat16 for v in eqn.invars)
    )
    # bf16 is really used (the convolutions of generator and discriminators, both passes) ...
    assert bf16["conv_general_dilated"] > 100, bf16
    # ... and nothing else sees it: in particular no bfloat16 sum (a bias gradient summed in
    # bfloat16 came out at half its value), no FFT, log or sin, no argmax over code distances.
    assert set(bf16) <= BF16_OK, sorted(set(bf16) - BF16_OK)


def test_bf16_encode_decode_keeps_most_codes(runlocal_codec):
    codec, params = runlocal_codec
    params = louder(params)  # a random-init decoder is near silent
    sr = codec.sample_rate
    music = SyntheticMusic(sr, 0.5, seed=3)
    x = jnp.asarray(np.stack([music[i] for i in range(2)])[..., None])
    bf16 = codec.clone(dtype=jnp.bfloat16)

    @jax.jit
    def code(params, x):
        """Both encoders' codes; both decoders' audio from the float32 codes."""
        codes = codec.apply(params, x, method=codec.encode)
        audio = [c.apply(params, codes, x.shape[1], method=c.decode) for c in (codec, bf16)]
        return codes, bf16.apply(params, x, method=bf16.encode), audio

    codes32, codes16, (audio32, audio16) = code(params, x)
    assert audio16.dtype == jnp.float32
    agree = [
        float(np.mean(np.asarray(a) == np.asarray(b)))
        for a, b in zip(codes32, codes16, strict=True)
    ]
    snr = snr_db(np.asarray(audio32), np.asarray(audio16))
    print("identical codes per level", [round(a, 3) for a in agree], f"decode SNR {snr:.1f} dB")
    # measured: 0.80-0.89 of the codes per level; the same codes decode at ~32 dB SNR
    assert min(agree) > 0.7, agree
    assert snr > 25.0, snr


@pytest.mark.slow
def test_bf16_train_steps_track_float32():
    trainers = {dtype: _tiny_trainer(dtype) for dtype in ("float32", "bfloat16")}
    state = jax.jit(trainers["float32"].init_state)(jax.random.key(0))  # the same for both
    batch = music_batch(trainers["float32"], n=2)
    metrics = {}
    for dtype, trainer in trainers.items():
        step = jax.jit(trainer.train_step)
        s, metrics[dtype] = state, []
        for _ in range(4):
            s, m = step(s, batch, jax.random.key(7))
            metrics[dtype].append(jax.device_get(m))
        assert int(s.nonfinite_steps) == 0
        assert {str(x.dtype) for x in jax.tree.leaves(s.gen_params)} == {"float32"}
    losses = ("loss/mel", "loss/stft", "loss/adv_d", "loss/adv_g", "loss/fm", "loss/total_g")
    for i, (m32, m16) in enumerate(zip(metrics["float32"], metrics["bfloat16"])):
        assert all(np.isfinite(v) for v in m16.values()), m16
        for k in losses:
            print(f"step {i} {k}: float32 {m32[k]:.4f} bfloat16 {m16[k]:.4f}")
            # Step 0 is one forward from the same weights; later steps add Adam's amplification
            # of gradient differences. measured: at most 0.1% at step 0, 0.5% after.
            np.testing.assert_allclose(m16[k], m32[k], rtol=0.005 if i == 0 else 0.02, err_msg=k)
    # The first gradients, from the same weights: the discriminators' agree to ~0.1% (they were
    # 12% off with bias gradients summed in bfloat16); the generator's to ~3% (its near-silent
    # random-init output makes the log-mel gradient sensitive to rounding).
    first32, first16 = metrics["float32"][0], metrics["bfloat16"][0]
    np.testing.assert_allclose(first16["norm/grad_d"], first32["norm/grad_d"], rtol=0.02)
    np.testing.assert_allclose(first16["norm/grad_g"], first32["norm/grad_g"], rtol=0.1)
