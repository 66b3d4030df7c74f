"""DAC's training recipe, term by term: our train step of the DAC preset against PyTorch DAC's.

The reference is DAC's own modules (`dac.model.DAC`, `dac.model.Discriminator`,
`dac.nn.loss.MelSpectrogramLoss`, `dac.nn.loss.GANLoss`) driven as DAC's scripts/train.py
`train_loop` drives them: D loss on the detached reconstruction, D step (clip 10), then the
generator losses through the updated D, weighted by conf/base.yml's lambdas, G step (clip 1000);
torch.optim.AdamW(lr 1e-4, betas (0.8, 0.99)) and ExponentialLR(0.999996) for both. Ours is
`Trainer.train_step` of configs/dac_44khz.py:tiny (DAC's structure, narrow) with small
discriminators: MPD periods 2 and 3 at DAC's widths (T = 4096: period 2 divides it, so the
padding rule matters) and one MRD. Both start from the same weights (converted in memory),
see the same batch and the same quantizer-dropout draw (DAC's `torch.randint`, recorded and
passed to ours as `n_quantizers`). Our gradients are read from inside the real step (a
`Trainer` whose `_updates` also returns them). Needs torch and descript-audio-codec.
"""

import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jax_codec.config import load_config  # noqa: E402
from jax_codec.convert import ConversionError, convert_state_dict  # noqa: E402
from jax_codec.convert.core import dac_kwargs  # noqa: E402
from jax_codec.convert.discriminator import convert_discriminator_state_dict  # noqa: E402
from jax_codec.models.discriminators import build_discriminators  # noqa: E402
from jax_codec.training.state import TrainState  # noqa: E402
from jax_codec.training.step import Trainer, training_compiler_options  # noqa: E402

SR = 44100
BATCH = 2
SEGMENT_SECONDS = 0.1  # 4096 samples, 8 frames of 512
# conf/base.yml
LAMBDAS = {
    "mel/loss": 15.0,
    "adv/feat_loss": 2.0,
    "adv/gen_loss": 1.0,
    "vq/commitment_loss": 0.25,
    "vq/codebook_loss": 1.0,
}
MEL = dict(
    n_mels=[5, 10, 20, 40, 80, 160, 320],
    window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
    mel_fmin=[0.0] * 7,
    mel_fmax=[None] * 7,
    pow=1.0,
    clamp_eps=1e-5,
    mag_weight=0.0,
)
# Our metric name -> DAC's train_loop output name.
TERMS = {
    "loss/mel": "mel/loss",
    "loss/adv_g": "adv/gen_loss",
    "loss/fm": "adv/feat_loss",
    "loss/adv_d": "adv/disc_loss",
    "vq/commitment": "vq/commitment_loss",
    "vq/codebook": "vq/codebook_loss",
    "loss/total_g": "loss",
}
# Loss terms, and each network's whole gradient (relative L2 over all its parameters).
ONE_STEP_TOL = 1e-4
# One parameter tensor's gradient (relative L2). Some are sums with heavy cancellation
# (weight-norm gains, Snake alphas, the last conv's gain): torch's own gradient of the same step
# moves by up to 2.5e-4 in such a tensor between 1 and 2 threads (median tensor 8e-7).
LEAF_TOL = 1e-3
STEPS = 20
# 20 steps, DAC's losses at our reconstruction as above (measured on a 2-core CPU: mel 1e-7,
# fm 2e-5, VQ 5e-6, total 6e-6, adv_g 3.5e-4, adv_d 2.5e-4; final generator 1.2e-6 and
# discriminator 1.2e-4, against movements of 1.0e-3 and 4.5e-2). The adversarial terms and D
# drift most: Adam gives every coordinate a step of ~lr whatever its gradient's size, so the
# sign noise of D's near-zero gradients (leaky-ReLU kinks) becomes weight noise.
STEPS_TERM_TOL = {"loss/adv_g": 5e-3, "loss/adv_d": 5e-3}
STEPS_OTHER_TERM_TOL = 1e-4
STEPS_GEN_TOL = 1e-5  # 1% of the generator's movement in 20 steps
STEPS_DISC_TOL = 1e-3  # 2% of the discriminator's


def _reference(name: str):
    """Import a reference package, with a stand-in torchaudio if the real one cannot load
    (audiotools imports it at module level; nothing here calls it; see tests/test_convert.py)."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        for key in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
            del sys.modules[key]
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "0.0+stub"
        sys.modules["torchaudio"] = stub
    return pytest.importorskip(name)


dac = _reference("dac")
from audiotools import AudioSignal  # noqa: E402


def _config(**overrides):
    """configs/dac_44khz.py:tiny with small discriminators and 0.1 s crops of batch 2."""
    config = load_config("configs/dac_44khz.py:tiny")
    with config.unlocked():
        config.discriminator.periods = (2, 3)
        config.discriminator.mrd_window_lengths = (512,)
        config.train.segment_seconds = SEGMENT_SECONDS
        config.train.batch_size = BATCH
        for key, value in overrides.items():
            section, field = key.split(".")
            config[section][field] = value
    return config


def _perturb(models, seed: int) -> None:
    """Random biases, Snake alphas and weight-norm gains (torch's init leaves them 0 / 1 / |v|)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in models:
            for name, p in model.named_parameters():
                if name.endswith("alpha"):
                    p.copy_(0.5 + torch.rand(p.shape, generator=g))
                elif name.endswith("weight_g"):
                    p.mul_(0.5 + torch.rand(p.shape, generator=g))
                elif name.endswith("bias"):
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))


def _dac_models(config, seed: int = 0):
    """(DAC generator, DAC discriminator) of `config`'s shapes; the same weights every call."""
    m, d = config.model, config.discriminator
    torch.manual_seed(seed)
    generator = dac.DAC(**dac_kwargs(m), quantizer_dropout=m.quantizer_dropout)
    discriminator = dac.model.Discriminator(
        rates=[],
        periods=list(d.periods),
        fft_sizes=list(d.mrd_window_lengths),
        sample_rate=m.sample_rate,
    )
    _perturb((generator, discriminator), seed + 1)
    return generator, discriminator


def _batch(step: int, samples: int) -> np.ndarray:
    """`[B, T]` music-like audio: a few decaying partials and a little noise per example."""
    rng = np.random.default_rng(100 + step)
    t = np.arange(samples) / SR
    out = []
    for _ in range(BATCH):
        x = np.zeros(samples)
        for f0 in rng.uniform(60, 3000, 4):
            x += rng.uniform(0.05, 0.25) * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 6.3))
        out.append(x * np.exp(-t * rng.uniform(0, 8)) + 0.02 * rng.standard_normal(samples))
    return np.stack(out).astype(np.float32)


class DACTrainLoop:
    """DAC's scripts/train.py `train_loop` (no data transform, no AMP), on DAC's modules."""

    def __init__(self, generator, discriminator, lr: float = 1e-4, gamma: float = 0.999996):
        self.generator, self.discriminator = generator.train(), discriminator.train()
        self.mel_loss = dac.nn.loss.MelSpectrogramLoss(**MEL)
        self.gan_loss = dac.nn.loss.GANLoss(discriminator)
        # conf/base.yml sets lr and betas; weight decay is torch's default, 0.01.
        adamw = lambda ps: torch.optim.AdamW(ps, lr=lr, betas=(0.8, 0.99))
        self.optimizer_g = adamw(generator.parameters())
        self.optimizer_d = adamw(discriminator.parameters())
        self.scheduler_g = torch.optim.lr_scheduler.ExponentialLR(self.optimizer_g, gamma)
        self.scheduler_d = torch.optim.lr_scheduler.ExponentialLR(self.optimizer_d, gamma)

    def next_draw(self, audio: np.ndarray, monkeypatch) -> np.ndarray:
        """The `n_quantizers [B]` the next `step` will draw (torch's RNG left as it was)."""
        rng = torch.get_rng_state()
        with torch.no_grad():
            n = self._forward(audio, monkeypatch)[2]
        torch.set_rng_state(rng)
        return n

    def _forward(self, audio: np.ndarray, monkeypatch):
        draws = []
        randint = torch.randint

        def recording_randint(*args, **kwargs):  # DAC's quantizer-dropout draw
            draws.append(randint(*args, **kwargs))
            return draws[-1]

        signal = AudioSignal(torch.from_numpy(audio)[:, None], SR)
        with monkeypatch.context() as mp:
            mp.setattr(torch, "randint", recording_randint)
            out = self.generator(signal.audio_data, signal.sample_rate)
        assert len(draws) == 1
        # DAC's ResidualVectorQuantize.forward: the first int(B * dropout) examples use
        # dropout[i] levels, the others all of them.
        k = len(self.generator.quantizer.quantizers)
        n = np.full(len(audio), k, np.int32)
        n_dropout = int(len(audio) * self.generator.quantizer.quantizer_dropout)
        n[:n_dropout] = draws[0].numpy()[:n_dropout]
        return signal, out, n

    def step(
        self, audio: np.ndarray, monkeypatch, recons_value: np.ndarray | None = None
    ) -> tuple[dict, dict, dict, np.ndarray, np.ndarray]:
        """One step on `audio [B, T]` -> (outputs, D grads, G grads, n_quantizers [B], the
        generator's own output [B, T]).

        `recons_value`: evaluate the losses at this reconstruction instead of the generator's
        own (the gradient still flows through the generator: `out + sg(value - out)`).
        """
        signal, out, n = self._forward(audio, monkeypatch)
        audio_out = out["audio"]
        if recons_value is not None:
            value = torch.from_numpy(recons_value)[:, None]
            audio_out = audio_out + (value - audio_out).detach()
        recons = AudioSignal(audio_out, signal.sample_rate)
        output = {"adv/disc_loss": self.gan_loss.discriminator_loss(recons, signal)}
        self.optimizer_d.zero_grad()
        output["adv/disc_loss"].backward()
        d_grads = _grads(self.discriminator)
        torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), 10.0)
        self.optimizer_d.step()
        self.scheduler_d.step()

        output["mel/loss"] = self.mel_loss(recons, signal)
        output["adv/gen_loss"], output["adv/feat_loss"] = self.gan_loss.generator_loss(
            recons, signal
        )
        output["vq/commitment_loss"] = out["vq/commitment_loss"]
        output["vq/codebook_loss"] = out["vq/codebook_loss"]
        output["loss"] = sum(v * output[k] for k, v in LAMBDAS.items())
        self.optimizer_g.zero_grad()
        output["loss"].backward()
        g_grads = _grads(self.generator)
        torch.nn.utils.clip_grad_norm_(self.generator.parameters(), 1e3)
        self.optimizer_g.step()
        self.scheduler_g.step()
        own = out["audio"].detach()[:, 0].numpy()
        return {k: float(v) for k, v in output.items()}, d_grads, g_grads, n, own


def _grads(model) -> dict:
    return {
        n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
        for n, p in model.named_parameters()
    }


class _RecordingModule:
    """A module whose `apply` keeps its inputs (tracers of the step being traced)."""

    def __init__(self, module):
        self.module, self.inputs = module, []

    def apply(self, params, audio, *args, **kwargs):
        self.inputs.append(audio)
        return self.module.apply(params, audio, *args, **kwargs)

    def init(self, *args, **kwargs):
        return self.module.init(*args, **kwargs)


class _Probe(Trainer):
    """The product's `Trainer`; its step also hands out the gradients it updates with and the
    reconstruction it trains the discriminators on (their first input: real, then fake)."""

    def __init__(self, config):
        super().__init__(config)
        self.grads = {}
        self.disc = _RecordingModule(self.disc)

    def _updates(self, which, grads, opt_state, params, keep):
        self.grads[which] = grads  # tracers of the step being traced, returned by `step`
        return super()._updates(which, grads, opt_state, params, keep)


def _ours(trainer: _Probe, gen_params, disc_params):
    """(compiled step(state, batch, key, n_quantizers) -> (state, metrics, grads {"gen",
    "disc"}, reconstruction [B, T]), the state at `gen_params` / `disc_params`)."""
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        gen_params=jax.tree.map(jnp.asarray, gen_params),
        disc_params=jax.tree.map(jnp.asarray, disc_params),
        gen_opt_state=trainer.gen_tx.init(gen_params),
        disc_opt_state=trainer.disc_tx.init(disc_params),
        ema_params=None,
        balancer_state=None,
        nonfinite_steps=jnp.zeros((), jnp.int32),
        vq_usage=None,
    )
    assert trainer.config.train.dead_code_threshold == 0 and not trainer.config.loss.balancer

    def step(state, batch, key, n_quantizers):
        trainer.disc.inputs.clear()
        new, metrics = trainer.train_step(state, batch, key, n_quantizers)
        # The D update's input, [x; stop_gradient(y)]: built outside D's gradient trace.
        recons = trainer.disc.inputs[0][BATCH:, :, 0]
        return new, metrics, dict(trainer.grads), recons

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    args = (
        state,
        jax.ShapeDtypeStruct((BATCH, trainer.segment), jnp.float32),
        jax.random.key(0),
        jax.ShapeDtypeStruct((BATCH,), jnp.int32),
    )
    # XLA's optimisation passes cost the compile far more than they save in a few steps of a
    # tiny model on a CPU: the test checks the arithmetic, not the speed.
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        fn = jax.jit(step, compiler_options=training_compiler_options(mesh))
        compiled = fn.lower(*args).compile()
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
    return compiled, state


def _leaf_rel(ours, ref, norm: str = "l2") -> dict[str, float]:
    """Per leaf: |ours - ref| / |ref| in L2 norm ("l2") or max norm ("max"); 0 if both are 0."""
    out = {}
    flat_ref = dict(jax.tree_util.tree_flatten_with_path(ref)[0])
    for path, a in jax.tree_util.tree_flatten_with_path(ours)[0]:
        b = np.asarray(flat_ref[path], np.float64).ravel()
        d = np.asarray(a, np.float64).ravel() - b
        ord_ = 2 if norm == "l2" else np.inf
        diff, scale = float(np.linalg.norm(d, ord_)), float(np.linalg.norm(b, ord_))
        out[jax.tree_util.keystr(path)] = diff / scale if scale > 0 else diff
    return out


def _rel(ours, ref) -> float:
    """|ours - ref| / |ref| in L2 over every leaf of the trees."""
    flat = lambda t: np.concatenate(
        [np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(t)]
    )
    a, b = flat(ours), flat(ref)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _term_rel(metrics, output) -> dict[str, float]:
    return {k: abs(float(metrics[k]) - output[v]) / abs(output[v]) for k, v in TERMS.items()}


@pytest.fixture(scope="module")
def recipe():
    """(config, trainer, compiled step, our state at `_dac_models(config)`'s weights)."""
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    config = _config()
    generator, discriminator = _dac_models(config)
    trainer = _Probe(config)
    compiled, state = _ours(
        trainer,
        convert_state_dict("dac", generator.state_dict(), config),
        convert_discriminator_state_dict(discriminator.state_dict(), config),
    )
    return config, trainer, compiled, state


def test_preset_is_dacs_recipe():
    """The DAC preset states DAC's recipe (conf/base.yml, scripts/train.py, GANLoss)."""
    c = load_config("configs/dac_44khz.py")
    assert (c.loss.mel_weight, c.loss.adv_weight, c.loss.fm_weight) == (15.0, 1.0, 2.0)
    assert (c.loss.commitment_weight, c.loss.codebook_weight) == (0.25, 1.0)
    assert (c.loss.stft_weight, c.loss.cqt_weight, c.loss.onset_weight) == (0.0, 0.0, 0.0)
    assert c.loss.get("waveform_weight", 0.0) == 0.0 and c.loss.fm_reduction == "sum"
    assert tuple(c.loss.mel_window_lengths) == tuple(MEL["window_lengths"])
    assert tuple(c.loss.mel_n_mels) == tuple(MEL["n_mels"]) and c.loss.mel_power == 1.0
    assert c.loss.adversarial == "lsgan" and not c.loss.balancer
    o = c.optim
    assert (o.learning_rate, o.disc_learning_rate, o.b1, o.b2) == (1e-4, 1e-4, 0.8, 0.99)
    assert (o.weight_decay, o.warmup_steps, o.decay_rate) == (0.01, 0, 0.999996)
    assert (o.clip_norm, o.disc_clip_norm) == (1000.0, 10.0)
    d = c.discriminator
    assert tuple(d.kinds) == ("mpd", "mrd") and d.mpd_pad == "dac" and d.channels == 32
    assert tuple(d.periods) == (2, 3, 5, 7, 11) and tuple(d.mrd_window_lengths) == (2048, 1024, 512)
    assert c.train.dead_code_threshold == 0 and c.train.ema_decay == 0
    assert c.model.quantizer_dropout == 0.5  # conf/final/44khz.yml


def test_one_step_equals_dacs_term_by_term(recipe, monkeypatch):
    """Every loss term and both networks' gradients of one step equal DAC's within 1e-4.

    DAC's losses are evaluated at our reconstruction (equal to its generator's own output to
    ~3e-7, checked), with the gradient flowing through its generator: DAC's log-mel loss is so
    ill-conditioned in float32 that moving the audio by 1e-7 moves its generator gradient by
    ~1e-3, which would hide everything else. The 20-step test runs the two fully apart.
    """
    config, trainer, compiled, state = recipe
    reference = DACTrainLoop(*_dac_models(config))  # the weights `state` was converted from
    x = _batch(0, trainer.segment)
    n_quantizers = reference.next_draw(x, monkeypatch)
    _, metrics, grads, recons = compiled(state, jnp.asarray(x), jax.random.key(0), n_quantizers)
    recons = np.asarray(recons)
    output, d_grads, g_grads, n_dac, own = reference.step(x, monkeypatch, recons)
    np.testing.assert_array_equal(n_dac, n_quantizers)
    forward = float(np.max(np.abs(recons - own)) / np.max(np.abs(own)))

    terms = _term_rel(metrics, output)
    ref_g = convert_state_dict("dac", g_grads, config)
    ref_d = convert_discriminator_state_dict(d_grads, config)
    rel_g, rel_d = _leaf_rel(grads["gen"], ref_g), _leaf_rel(grads["disc"], ref_d)
    whole = {"generator": _rel(grads["gen"], ref_g), "discriminator": _rel(grads["disc"], ref_d)}
    print(f"\nreconstruction vs DAC's own: rel {forward:.1e}; draw {n_quantizers}")
    print("loss terms, relative difference to DAC:")
    for k, v in terms.items():
        print(f"  {k:16s} ours {float(metrics[k]):.6f}  DAC {output[TERMS[k]]:.6f}  rel {v:.1e}")
    for name, rel in (("generator", rel_g), ("discriminator", rel_d)):
        print(
            f"  {name} gradient: whole rel {whole[name]:.1e}; per tensor ({len(rel)}) median "
            f"{np.median(list(rel.values())):.1e}, worst:"
        )
        for k in sorted(rel, key=rel.get, reverse=True)[:3]:
            print(f"    {k} rel {rel[k]:.1e}")
    worst_max = max(
        max(_leaf_rel(grads["gen"], ref_g, "max").values()),
        max(_leaf_rel(grads["disc"], ref_d, "max").values()),
    )
    print(f"  worst tensor in max norm: {worst_max:.1e}")
    assert forward <= 1e-5
    bad = {k: v for k, v in {**terms, **whole}.items() if not v <= ONE_STEP_TOL}
    assert not bad, f"differ from DAC's: {bad}"
    bad = {k: v for k, v in {**rel_g, **rel_d}.items() if not v <= LEAF_TOL}
    assert not bad, f"gradients differ from DAC's: {dict(list(bad.items())[:5])}"


@pytest.mark.slow  # ~5 min on 2 busy cores (20 steps of each)
def test_twenty_steps_track_dacs(recipe, monkeypatch):
    """20 optimizer steps from the same start (AdamW, ExponentialLR, clipping, D then G):
    the losses of every step and the final weights stay with DAC's.

    As in the one-step test, DAC's losses are evaluated at our reconstruction. Run fully apart,
    both drift chaotically (VQ code flips, Adam's per-coordinate steps, the log-mel loss's
    conditioning), as DAC does against itself: DAC on 1 thread against DAC on 2 threads ends
    20 steps 7.5e-4 apart in the generator's weights and 4e-3 in the discriminator's, with
    loss terms up to 15% apart (commitment) - the size of the weights' whole movement.
    """
    config, trainer, compiled, state = recipe
    generator, discriminator = _dac_models(config)
    reference = DACTrainLoop(generator, discriminator)
    key = jax.random.key(0)
    worst = {k: 0.0 for k in TERMS}
    print("\nstep  " + "  ".join(f"{k.split('/')[1]:>9s}" for k in TERMS))
    for i in range(STEPS):
        x = _batch(i, trainer.segment)
        n_quantizers = reference.next_draw(x, monkeypatch)
        state, metrics, _, recons = compiled(state, jnp.asarray(x), key, n_quantizers)
        output, *_ = reference.step(x, monkeypatch, np.asarray(recons))
        terms = _term_rel(metrics, output)
        worst = {k: max(worst[k], v) for k, v in terms.items()}
        print(f"{i:4d}  " + "  ".join(f"{terms[k]:9.1e}" for k in TERMS))
    assert int(state.step) == STEPS
    start_g, start_d = _dac_models(config)
    to_ours = lambda g, d: (
        convert_state_dict("dac", g.state_dict(), config),
        convert_discriminator_state_dict(d.state_dict(), config),
    )
    (ref_g, ref_d), (g0, d0) = to_ours(generator, discriminator), to_ours(start_g, start_d)
    gen, disc = _rel(state.gen_params, ref_g), _rel(state.disc_params, ref_d)
    print(
        f"final weights rel: generator {gen:.1e} (moved {_rel(ref_g, g0):.1e}), "
        f"discriminator {disc:.1e} (moved {_rel(ref_d, d0):.1e})"
    )
    print("worst per term over the steps:", {k: f"{v:.1e}" for k, v in worst.items()})
    bad = {k: v for k, v in worst.items() if not v <= STEPS_TERM_TOL.get(k, STEPS_OTHER_TERM_TOL)}
    assert not bad, f"loss terms drift from DAC's: {bad}"
    assert gen <= STEPS_GEN_TOL and disc <= STEPS_DISC_TOL, (gen, disc)


# ------------------------------------------------------------------ discriminator conversion


def _dac_discriminator(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    model = dac.model.Discriminator(**kwargs).eval()
    _perturb((model,), seed + 1)
    return model


@pytest.fixture(scope="module")
def full_discriminator():
    """DAC's `Discriminator()` as conf/base.yml builds it (5 MPD, 3 MRD), random weights."""
    return _dac_discriminator()


def test_discriminator_converts_exactly(full_discriminator):
    """DAC's released discriminator layout (5 MPD + 3 MRD) -> the DAC preset's discriminators:
    every logit and feature map equal (STFT framing, bands, DC removal and peak normalisation,
    MPD padding included), within 1e-5 of each map's scale."""
    config = load_config("configs/dac_44khz.py")
    params = convert_discriminator_state_dict(full_discriminator.state_dict(), config)
    disc = build_discriminators(config.discriminator)
    rng = np.random.default_rng(0)
    # 4096 samples: period 2 divides it, where DAC pads a whole extra row.
    x = _batch(3, 4096) + 0.05 + 0.01 * rng.standard_normal((BATCH, 4096)).astype(np.float32)
    with torch.no_grad():
        ref = full_discriminator(torch.from_numpy(x)[:, None])
    ours = jax.jit(disc.apply)(params, jnp.asarray(x)[..., None])
    assert len(ours) == len(ref) == 8
    worst = 0.0
    for fmaps, (logits, feats) in zip(ref, ours, strict=True):
        assert len(fmaps) == len(feats) + 1
        for a, b in zip(fmaps, [*feats, logits], strict=True):
            a, b = a.numpy(), np.moveaxis(np.asarray(b), -1, 1)  # ours channels-last
            assert a.shape == b.shape
            worst = max(worst, float(np.max(np.abs(a - b)) / np.max(np.abs(a))))
    print(f"\nworst feature map, max abs diff / scale: {worst:.1e}")
    assert worst <= 1e-5


def test_discriminator_conversion_errors(full_discriminator):
    config = load_config("configs/dac_44khz.py")
    generator, _ = _dac_models(_config())
    with pytest.raises(ConversionError, match=r"holds a DAC generator .* --discriminator"):
        convert_discriminator_state_dict(generator.state_dict(), config, "weights.pth")
    sd = full_discriminator.state_dict()
    small = load_config("configs/dac_44khz.py:runlocal")  # 3 MPD, 2 MRD, width 8
    with pytest.raises(ConversionError, match=r"5 MPD, 0 MSD, 3 MRD .* has 3 MPD, 0 MSD, 2 MRD"):
        convert_discriminator_state_dict(sd, small)
    with small.unlocked():
        small.discriminator.periods = (2, 3, 5, 7, 11)
        small.discriminator.mrd_window_lengths = (2048, 1024, 512)
    with pytest.raises(
        ConversionError,
        match=r"tensor discriminators\.0\.convs\.0\.0\.bias has shape \(32,\), the preset "
        r"expects \(8,\) \(for mpd/period_2/conv0/bias\).*channels=32",
    ):
        convert_discriminator_state_dict(sd, small)
    extra = {**sd, "discriminators.5.band_convs.5.0.bias": sd["discriminators.5.conv_post.bias"]}
    with pytest.raises(ConversionError, match=r"unused tensor discriminators\.5\.band_convs\.5"):
        convert_discriminator_state_dict(extra, config)


def test_convert_cli_takes_dacs_training_folder_and_init_from_uses_it(
    tmp_path, full_discriminator, capsys, caplog
):
    """A DAC training save (<tag>/dac/weights.pth + <tag>/discriminator/weights.pth) converts
    in one command; `train --init_from` then starts from both networks. Bad input: one line."""
    from jax_codec.convert.__main__ import main
    from jax_codec.convert.finetune import init_generator_from
    from jax_codec.training.step import Trainer

    config = load_config("configs/dac_44khz.py:tiny")
    generator, _ = _dac_models(_config())
    tag = tmp_path / "ckpt" / "latest"
    (tag / "dac").mkdir(parents=True)
    (tag / "discriminator").mkdir()
    torch.save({"state_dict": generator.state_dict(), "metadata": {}}, tag / "dac" / "weights.pth")
    disc_file = tag / "discriminator" / "weights.pth"
    torch.save({"state_dict": full_discriminator.state_dict(), "metadata": {}}, disc_file)

    out = tmp_path / "converted"
    args = ["--from=dac", "--config=configs/dac_44khz.py:tiny", f"--output={out}"]
    assert main([*args, f"--weights={tag}"]) == 0
    assert "with the discriminators of" in capsys.readouterr().out
    assert (out / "disc_params").is_dir()

    # --init_from takes both (this run has the preset's discriminators).
    trainer = Trainer(config)
    abstract = jax.eval_shape(trainer.init_state, jax.random.key(0))
    state = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract)
    with caplog.at_level("INFO"):
        state = init_generator_from(state, str(out), config)
    assert "generator and discriminators taken" in caplog.text
    expected = convert_discriminator_state_dict(full_discriminator.state_dict(), config)
    jax.tree.map(np.testing.assert_array_equal, state.disc_params, expected)
    # A run with other discriminators keeps them fresh, and says why.
    small = load_config("configs/dac_44khz.py:tiny,runlocal")
    trainer = Trainer(small)
    abstract = jax.eval_shape(trainer.init_state, jax.random.key(0))
    state = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract)
    caplog.clear()
    with caplog.at_level("INFO"):
        state = init_generator_from(state, str(out), small)
    assert "its discriminators are not taken (discriminator.periods=" in caplog.text
    assert not any(np.any(np.asarray(a)) for a in jax.tree.leaves(state.disc_params))

    # Bad input: exit code 2, one line naming the problem and the fix.
    for extra, message in (
        (
            [
                f"--weights={tag / 'dac' / 'weights.pth'}",
                f"--discriminator={tag / 'dac' / 'weights.pth'}",
            ],
            "holds a DAC generator (encoder/decoder/quantizer tensors), not a discriminator",
        ),
        ([f"--weights={disc_file}"], "holds a DAC discriminator, not the generator"),
        ([f"--weights={tmp_path}"], "is a directory without dac/weights.pth"),
    ):
        assert main([*args[:-1], f"--output={tmp_path / 'bad'}", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


def test_discriminator_weight_norm_spellings_convert_alike():
    """Old (weight_g/weight_v), new (parametrizations.weight.original0/1) and removed (plain
    weight) weight norm give the same discriminator weights."""
    config = _config()
    sd = _dac_models(config)[1].state_dict()
    new = {
        k.replace("weight_g", "parametrizations.weight.original0").replace(
            "weight_v", "parametrizations.weight.original1"
        ): v
        for k, v in sd.items()
    }
    plain = {}
    for k, v in sd.items():
        if k.endswith("weight_v"):
            g = sd[k[: -len("v")] + "g"]
            norm = v.flatten(1).norm(dim=1).reshape(g.shape)
            plain[k[: -len("_v")]] = g * v / norm
        elif not k.endswith("weight_g"):
            plain[k] = v
    ref = convert_discriminator_state_dict(sd, config)
    jax.tree.map(np.testing.assert_array_equal, convert_discriminator_state_dict(new, config), ref)
    # Without weight norm, v is the weight and g its norm: the same kernels g v / |v|.
    from jax_codec.models.kernels import weight_norm

    def kernels(p):
        flat = jax.tree_util.tree_flatten_with_path(p)[0]
        leaves = {jax.tree_util.keystr(k[:-1]): {} for k, _ in flat}
        for k, v in flat:
            leaves[jax.tree_util.keystr(k[:-1])][k[-1].key] = v
        return {k: np.asarray(weight_norm(d["weight_v"], d["weight_g"])) for k, d in leaves.items()}

    a, b = kernels(convert_discriminator_state_dict(plain, config)), kernels(ref)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)
