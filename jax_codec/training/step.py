"""One compiled train step: discriminator update, then generator update, metrics, NaN guard.

The generator runs forward once (`jax.vjp`); its output feeds the discriminator update (with the
gradient stopped) and then, through the *updated* discriminators, the generator losses, whose
gradient w.r.t. the audio is pulled back through the saved vjp. This is DAC's order of updates
at the cost of one generator forward pass.

Shapes: B batch, T samples, C channels. Batches are `[B, T]` float32 mono audio, or `[B, T, 2]`
for a joint-stereo model (`model.channels = 2`). A stereo model's reconstruction losses are the
weighted mean (`loss.stereo_weights`) of each loss on the left, right, mid and side signals, as
stable-audio-tools trains its stereo autoencoders (L/R plus sum-and-difference STFT losses), so
the stereo image is trained, not only each channel; its discriminators see each channel as its
own example, its mid and side as two examples, or the pair as two input channels
(`discriminator.stereo`; docs/stereo.md).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.flatten_util import ravel_pytree

from jax_codec import losses as L
from jax_codec.config import ConfigError
from jax_codec.models.codec import Codec, build_codec, resolve_dtype
from jax_codec.models.discriminators import (
    build_discriminators,
    discriminator_input,
    fold_channels,
)
from jax_codec.stereo import STEREO_SIGNALS, stereo_signals
from jax_codec.training import sharding as sh
from jax_codec.training.codebooks import codebook_ema, restart_dead_levels
from jax_codec.training.state import TrainState

Array = jax.Array

AUDIO_LOSSES = (
    "mel",
    "stft",
    "band_energy",
    "complex_stft",
    "waveform",
    "si_sdr",
    "cqt",
    "onset",
    "stereo_image",
    "adv_g",
    "fm",
)
ADVERSARIAL_TERMS = ("adv_g", "fm")


def segment_samples(config: ml_collections.ConfigDict, codec: Codec) -> int:
    """Training crop length in samples: `train.segment_seconds`, rounded down to the block."""
    m = codec.length_multiple
    n = int(config.train.segment_seconds * codec.sample_rate) // m * m
    if n == 0:
        raise ConfigError(
            f"train.segment_seconds={config.train.segment_seconds} is shorter than one codec "
            f"block ({m} samples = {m / codec.sample_rate:.3f} s); set it to at least that"
        )
    return n


def make_schedule(peak: float, warmup: int, decay_rate: float) -> optax.Schedule:
    """Linear warmup to `peak`, then exponential decay by `decay_rate` per step."""
    decay = optax.exponential_decay(peak, transition_steps=1, decay_rate=decay_rate)
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def make_optimizer(
    schedule: optax.Schedule,
    clip: float,
    optim: ml_collections.ConfigDict,
    flatten: bool = False,
) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW.

    `flatten` runs it on all parameters raveled into one vector (`optax.flatten`): the same
    arithmetic in a handful of kernels instead of several per parameter leaf, which cuts the
    train step's compile time. Only for replicated parameters: with FSDP the ravel would
    gather every shard.
    """
    tx = optax.chain(
        optax.clip_by_global_norm(clip),
        optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay),
    )
    return optax.flatten(tx) if flatten else tx


def _where(cond: Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: jnp.where(cond, n, o), new, old)


class Trainer:
    """Builds models, optimizers and the (un-jitted) step functions from a config."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        dtype = resolve_dtype(config.model.dtype)
        self.codec = build_codec(config.model, dtype=config.model.dtype)
        # What the discriminators see of a `[B, T, C]` batch (`discriminator.stereo`).
        try:
            self.disc_input = discriminator_input(config.discriminator)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.disc = build_discriminators(config.discriminator, dtype=dtype)
        optim = config.optim
        self.gen_schedule = make_schedule(optim.learning_rate, optim.warmup_steps, optim.decay_rate)
        disc_schedule = make_schedule(
            optim.disc_learning_rate, optim.warmup_steps, optim.decay_rate
        )
        # One raveled optimizer vector when parameters are replicated (no FSDP); see
        # `make_optimizer`. The optimizer state's structure follows, so a checkpoint resumes
        # under the same `mesh.fsdp == 1` (or `> 1`) choice.
        self.flat = int(config.mesh.fsdp) == 1
        # `_*_core` are the per-vector optimizers; when `flat`, `*_tx` wrap them in
        # `optax.flatten` (same state) and the step calls the cores on raveled vectors.
        self._gen_core = make_optimizer(self.gen_schedule, optim.clip_norm, optim)
        self._disc_core = make_optimizer(disc_schedule, optim.disc_clip_norm, optim)
        self.gen_tx = optax.flatten(self._gen_core) if self.flat else self._gen_core
        self.disc_tx = optax.flatten(self._disc_core) if self.flat else self._disc_core
        self.segment = segment_samples(config, self.codec)
        lc = config.loss
        # Stereo: the signals (`STEREO_SIGNALS` indices) with a positive weight, and their
        # weights normalised to sum to 1 (each loss keeps its mono scale).
        stereo_w = np.asarray(lc.get("stereo_weights", (1.0, 1.0, 1.0, 1.0)), np.float32)
        self.stereo_index = tuple(int(i) for i in np.flatnonzero(stereo_w > 0))
        self.stereo_weights = stereo_w[list(self.stereo_index)] / stereo_w.sum()
        if lc.adversarial not in L.ADVERSARIAL_KINDS:
            raise ConfigError(
                f"loss.adversarial={lc.adversarial!r}; use one of {L.ADVERSARIAL_KINDS}"
            )
        if lc.balancer and int(lc.get("gan_start_step", 0)) > 0:
            raise ConfigError(
                "loss.gan_start_step needs fixed loss weights; set loss.balancer=False or "
                "loss.gan_start_step=0"
            )
        self.weights = {
            "mel": lc.mel_weight,
            "stft": lc.stft_weight,
            "band_energy": lc.get("band_energy_weight", 0.0),
            "complex_stft": lc.get("complex_stft_weight", 0.0),
            "waveform": lc.get("waveform_weight", 0.0),
            "si_sdr": lc.get("si_sdr_weight", 0.0),
            "cqt": lc.cqt_weight,
            "onset": lc.onset_weight,
            # Stereo models only (a mono model has no image to train).
            "stereo_image": lc.get("stereo_image_weight", 0.0) if self.codec.channels == 2 else 0.0,
            "adv_g": lc.adv_weight,
            "fm": lc.fm_weight,
        }
        self.codebook_ema_decay = float(config.train.get("codebook_ema_decay", 0.0))
        if not 0.0 <= self.codebook_ema_decay < 1.0:
            raise ConfigError(
                f"train.codebook_ema_decay={self.codebook_ema_decay}; use 0 (off) or a decay "
                "in (0, 1), e.g. 0.99"
            )
        grace, threshold = (
            config.train.get("dead_code_grace", 1.0),
            config.train.dead_code_threshold,
        )
        if threshold > 0 and not grace > threshold:
            raise ConfigError(
                f"train.dead_code_grace={grace} is not above train.dead_code_threshold="
                f"{threshold}, so every unused code would restart at every step; use a grace "
                "above the threshold (1.0 by default)"
            )
        if self.codebook_ema_decay > 0 and self.codec.vq_kind not in ("plain", "euclidean"):
            raise ConfigError(
                "train.codebook_ema_decay updates codebooks that live in the latent space; "
                f"model.quantizer={self.codec.vq_kind!r} has projected codes. Use "
                "model.quantizer='plain' (with model.codebook_dim = the latent's size) or set "
                "train.codebook_ema_decay=0"
            )

    # ---- state ----
    def init_state(self, key: Array) -> TrainState:
        """Fresh state (use under `jax.jit(..., out_shardings=...)` to create it sharded)."""
        k_gen, k_disc, k_drop = jax.random.split(key, 3)
        x = jnp.zeros((1, self.segment, self.codec.channels), jnp.float32)
        gen_params = self.codec.init({"params": k_gen, "dropout": k_drop}, x)
        disc_params = self.disc.init(k_disc, self.disc_input(x)[:1])
        use_balancer = self.config.loss.balancer
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            gen_params=gen_params,
            disc_params=disc_params,
            gen_opt_state=self.gen_tx.init(gen_params),
            disc_opt_state=self.disc_tx.init(disc_params),
            ema_params=gen_params if self.config.train.ema_decay > 0 else None,
            balancer_state=L.init_balancer_state(self._active_losses()) if use_balancer else None,
            nonfinite_steps=jnp.zeros((), jnp.int32),
            # Codes start with a "grace" count so nothing is restarted before it had a chance.
            vq_usage=jnp.full(
                (self.codec.num_quantizers, self.codec.codebook_size),
                self.config.train.get("dead_code_grace", 1.0),
                jnp.float32,
            )
            if self.config.train.dead_code_threshold > 0
            else None,
        )

    def batch_shape(self, batch_size: int) -> tuple[int, ...]:
        """A batch's shape: `(B, T)` for a mono model, `(B, T, C)` for a stereo one."""
        c = self.codec.channels
        return (batch_size, self.segment) + ((c,) if c > 1 else ())

    def _norm(self, tree: Any) -> Array:
        """Global L2 norm of a tree: one reduction over the raveled tree when unsharded."""
        if self.flat:
            return jnp.linalg.norm(ravel_pytree(tree)[0])
        return optax.tree.norm(tree)

    def _step_weights(self, step: Array) -> dict[str, Array | float]:
        """Loss weights at `step`: the adversarial terms (adv_g, fm) are 0 before
        `loss.gan_start_step` (a reconstruction-only warm-up; D trains throughout)."""
        start = int(self.config.loss.get("gan_start_step", 0))
        if start <= 0:
            return dict(self.weights)
        on = (step >= start).astype(jnp.float32)
        return {k: (w * on if k in ADVERSARIAL_TERMS else w) for k, w in self.weights.items()}

    def _active_losses(self) -> list[str]:
        return [k for k in AUDIO_LOSSES if self.weights[k] > 0]

    def _updates(
        self, which: str, grads: Any, opt_state: Any, params: Any, keep: Array
    ) -> tuple[Any, Any]:
        """(updates, new optimizer state) of the "gen" or "disc" optimizer.

        Unsharded (`flat`), the update is computed on one raveled vector, and zeroed unless
        `keep`. That zeroing is a `lax.cond`, which XLA does not fuse across: the AdamW step
        and the learning-rate schedule are computed once into one buffer, and each parameter's
        `p + u` reads a slice of it. Without it XLA recomputed them inside every kernel that
        reads an updated parameter (~1,500 kernels, about a third of the step's fused HLO).
        Sharded, `keep` is left to the step's final guard.
        """
        if not self.flat:
            tx = self.gen_tx if which == "gen" else self.disc_tx
            return tx.update(grads, opt_state, params)
        core = self._gen_core if which == "gen" else self._disc_core
        flat_grads, unravel = ravel_pytree(grads)
        flat_updates, opt_state = core.update(flat_grads, opt_state, ravel_pytree(params)[0])
        flat_updates = jax.lax.cond(keep, lambda u: u, jnp.zeros_like, flat_updates)
        return unravel(flat_updates), opt_state

    # ---- losses ----
    def reconstruction_losses(self, y: Array, x: Array) -> dict[str, Array]:
        """Spectral/music losses of `y` against `x`, both `[B, T]` float32 (unweighted)."""
        lc, sr = self.config.loss, self.codec.sample_rate
        out = {}
        if self.weights["mel"] > 0:
            out["mel"] = L.multi_resolution_mel_loss(
                y, x, sr, tuple(lc.mel_window_lengths), tuple(lc.mel_n_mels), power=lc.mel_power
            )
        if self.weights["stft"] > 0:
            out["stft"] = L.multi_scale_stft_loss(y, x)
        if self.weights["band_energy"] > 0:
            out["band_energy"] = L.band_energy_loss(y, x, sr)
        if self.weights["complex_stft"] > 0:
            out["complex_stft"] = L.complex_stft_loss(y, x)
        if self.weights["waveform"] > 0:
            out["waveform"] = L.waveform_l1_loss(y, x)
        if self.weights["si_sdr"] > 0:
            out["si_sdr"] = L.si_sdr_loss(y, x)
        if self.weights["cqt"] > 0:
            out["cqt"] = L.cqt_loss(y, x, sr)
        if self.weights["onset"] > 0:
            out["onset"] = L.onset_weighted_loss(y, x, sr)
        return out

    def stereo_reconstruction_losses(
        self, y: Array, x: Array
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """A stereo model's losses of `y` against `x`, both `[B, T, 2]` float32: (each loss as
        the `loss.stereo_weights` mean over left, right, mid and side, the same losses per
        signal `[S]` for the signals of positive weight, in `self.stereo_index` order)."""
        index = np.asarray(self.stereo_index)
        per_signal = jax.vmap(self.reconstruction_losses)(
            stereo_signals(y)[index], stereo_signals(x)[index]
        )
        w = jnp.asarray(self.stereo_weights)
        return {k: jnp.sum(w * v) for k, v in per_signal.items()}, per_signal

    def _reconstruction(self, y: Array, x: Array) -> tuple[dict[str, Array], dict[str, Array]]:
        """(losses, per-signal losses: empty for mono) of `y` against `x`, `[B, T, C]`."""
        if self.codec.channels == 1:
            return self.reconstruction_losses(y[..., 0].astype(jnp.float32), x[..., 0]), {}
        y = y.astype(jnp.float32)
        parts, per_signal = self.stereo_reconstruction_losses(y, x)
        if self.weights["stereo_image"] > 0:
            parts["stereo_image"] = L.stereo_image_loss(y, x, self.codec.sample_rate)
        return parts, per_signal

    def _adv_losses(self, disc_params: Any, y: Array, x: Array) -> dict[str, Array]:
        out = {}
        if self.weights["adv_g"] <= 0 and self.weights["fm"] <= 0:
            return out
        y, x = self.disc_input(y), self.disc_input(x)
        b = x.shape[0]
        both = self.disc.apply(disc_params, jnp.concatenate([x, y], axis=0))
        real = [(lg[:b], [f[:b] for f in fs]) for lg, fs in both]
        fake = [(lg[b:], [f[b:] for f in fs]) for lg, fs in both]
        f32 = lambda a: a.astype(jnp.float32)
        out["adv_g"] = L.generator_adv_loss(
            [f32(lg) for lg, _ in fake], self.config.loss.adversarial
        )
        out["fm"] = L.feature_matching_loss(
            [[f32(f) for f in fs] for _, fs in real],
            [[f32(f) for f in fs] for _, fs in fake],
            reduction=self.config.loss.get("fm_reduction", "sum"),
        )
        return out

    # ---- the step ----
    def train_step(
        self, state: TrainState, batch: Array, base_key: Array, n_quantizers: Array | None = None
    ) -> tuple[TrainState, dict]:
        """One D update then one G update. `batch [B, T]` (`[B, T, C]` for a stereo model).
        Returns (new state, metrics).

        `n_quantizers`: optional int `[B]` levels per example, a given quantizer-dropout draw
        (e.g. DAC's, to reproduce its step); None draws it from the key."""
        cfg = self.config
        key = jax.random.fold_in(base_key, state.step)
        x = batch.astype(jnp.float32)
        x = x if x.ndim == 3 else x[..., None]

        def generator(gen_params):
            out = self.codec.apply(gen_params, x, n_quantizers, train=True, rngs={"dropout": key})
            vq = (
                cfg.loss.commitment_weight * out.losses["commitment"]
                + cfg.loss.codebook_weight * out.losses["codebook"]
            )
            if cfg.loss.get("residual_weight", 0.0):  # DAC's recipe (0) leaves it out
                vq = vq + cfg.loss.residual_weight * out.losses["residual"]
            return (out.audio, vq), out

        (y, vq_loss), gen_vjp, out = jax.vjp(generator, state.gen_params, has_aux=True)

        # Discriminator update on the detached reconstruction.
        y_sg = jax.lax.stop_gradient(y)

        def disc_loss_fn(dp):
            real, fake = self.disc_input(x), self.disc_input(y_sg)
            b = real.shape[0]
            logits = [
                lg.astype(jnp.float32)
                for lg, _ in self.disc.apply(dp, jnp.concatenate([real, fake]))
            ]
            return L.discriminator_loss(
                [lg[:b] for lg in logits], [lg[b:] for lg in logits], cfg.loss.adversarial
            )

        loss_d, d_grads = jax.value_and_grad(disc_loss_fn)(state.disc_params)
        grad_d = self._norm(d_grads)
        # (A non-finite D gradient fails the whole step below; zeroing its update here only
        # keeps the G pass's numbers finite.)
        d_updates, disc_opt_state = self._updates(
            "disc", d_grads, state.disc_opt_state, state.disc_params, jnp.isfinite(grad_d)
        )
        disc_params = optax.apply_updates(state.disc_params, d_updates)

        # Generator losses through the updated discriminators; gradient w.r.t. the audio first.
        def audio_losses(y_):
            parts, per_signal = self._reconstruction(y_, x)
            parts.update(self._adv_losses(disc_params, y_, x))
            return parts, per_signal

        balancer_state = state.balancer_state
        metrics = {}
        weights = self._step_weights(state.step)
        if cfg.loss.balancer:
            fns = {k: (lambda y_, k=k: audio_losses(y_)[0][k]) for k in self._active_losses()}
            g_y, balancer_state, bal_metrics = L.balance_gradients(
                fns, {k: self.weights[k] for k in fns}, y, state.balancer_state
            )
            parts, per_signal = audio_losses(y)
            metrics.update({k: v for k, v in bal_metrics.items() if k.startswith("balancer/")})
        else:

            def weighted(y_):
                parts, per_signal = audio_losses(y_)
                return sum(weights[k] * v for k, v in parts.items()), (parts, per_signal)

            (_, (parts, per_signal)), g_y = jax.value_and_grad(weighted, has_aux=True)(y)
        (g_grads,) = gen_vjp((g_y.astype(y.dtype), jnp.ones_like(vq_loss)))
        loss_g = sum(weights[k] * v for k, v in parts.items()) + vq_loss
        grad_g = self._norm(g_grads)
        finite = (
            jnp.isfinite(loss_g)
            & jnp.isfinite(loss_d)
            & jnp.isfinite(grad_g)
            & jnp.isfinite(grad_d)
        )
        g_updates, gen_opt_state = self._updates(
            "gen", g_grads, state.gen_opt_state, state.gen_params, finite
        )
        gen_params = optax.apply_updates(state.gen_params, g_updates)
        if self.codebook_ema_decay > 0:
            gen_params = self._codebook_ema(gen_params, out)
        vq_usage, restarted = state.vq_usage, jnp.zeros((), jnp.float32)
        if vq_usage is not None:
            gen_params, vq_usage, restarted = self._restart_dead_codes(
                gen_params, vq_usage, out, jax.random.fold_in(key, 1)
            )
        ema = state.ema_params
        if ema is not None:
            decay = cfg.train.ema_decay
            ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, gen_params)
        new = state.replace(
            step=state.step + 1,
            gen_params=gen_params,
            disc_params=state.disc_params,  # guarded below
            gen_opt_state=gen_opt_state,
            disc_opt_state=disc_opt_state,
            ema_params=ema,
            balancer_state=balancer_state,
            vq_usage=vq_usage,
        )
        # Non-finite guard: keep every parameter and optimizer moment, count the skipped step.
        new = _where(finite, new, state.replace(step=state.step + 1))
        # The same guard for D, written as p + (finite ? u : 0) (equal values): one kernel per
        # parameter, apart from the unguarded p + u that the G pass above reads.
        new = new.replace(
            disc_params=jax.tree.map(
                lambda p, u: (p + jnp.where(finite, u, jnp.zeros_like(u))).astype(p.dtype),
                state.disc_params,
                d_updates,
            )
        )
        new = new.replace(nonfinite_steps=state.nonfinite_steps + (~finite).astype(jnp.int32))

        metrics.update({f"loss/{k}": v for k, v in parts.items()})
        for k, v in per_signal.items():  # stereo: e.g. loss/mel/side
            for j, i in enumerate(self.stereo_index):
                metrics[f"loss/{k}/{STEREO_SIGNALS[i]}"] = v[j]
        metrics.update(
            {
                "loss/adv_d": loss_d,
                "loss/total_g": loss_g,
                "vq/commitment": out.losses["commitment"],
                "vq/codebook": out.losses["codebook"],
                "vq/residual": out.losses["residual"],
                "vq/n_quantizers": jnp.mean(out.n_quantizers.astype(jnp.float32)),
                "norm/grad_g": grad_g,
                "norm/grad_d": grad_d,
                "norm/update_g": self._norm(g_updates),
                # From the guarded state: then each parameter's update and guard are one
                # kernel (an unguarded copy read here kept ~700 extra kernels alive).
                "norm/params_g": self._norm(new.gen_params),
                "norm/params_d": self._norm(new.disc_params),
                "train/lr": self.gen_schedule(state.step),
                "train/nonfinite_steps": new.nonfinite_steps,
                "train/step_finite": finite.astype(jnp.float32),
                "vq/restarted_codes": restarted,
            }
        )
        for k, v in out.stats.items():
            if not k.endswith("/counts"):
                metrics[f"vq/{k}"] = v
        metrics.update(self._code_lengths(new.gen_params, out))
        return new, metrics

    def _code_lengths(self, gen_params: Any, out: Any) -> dict:
        """Per level, the longest code and the median length of the level's input in code space
        (`vq/level{i}/code_norm_max`, `vq/level{i}/input_norm`): a divergence shows first as
        codes far longer than what they quantize (docs/training.md, "When a run diverges")."""
        quantizer = gen_params["params"].get("quantizer", {})
        metrics = {}
        for i, z_e in enumerate(out.projected):
            level = quantizer.get(f"level{i}")
            if level is None or "codebook" not in level:
                continue
            codes = level["codebook"].astype(jnp.float32)
            metrics[f"vq/level{i}/code_norm_max"] = jnp.max(jnp.linalg.norm(codes, axis=-1))
            lengths = jnp.linalg.norm(z_e.astype(jnp.float32), axis=-1)
            metrics[f"vq/level{i}/input_norm"] = jnp.median(lengths)
        return metrics

    def _codebook_ema(self, gen_params: Any, out: Any) -> Any:
        """`codebooks.codebook_ema` at `train.codebook_ema_decay`."""
        return codebook_ema(gen_params, out, self.codebook_ema_decay)

    def _restart_dead_codes(self, gen_params: Any, usage: Array, out: Any, key: Array):
        """`codebooks.restart_dead_levels` under `train`'s settings."""
        return restart_dead_levels(gen_params, usage, out, key, self.config.train)

    def eval_step(self, gen_params: Any, batch: Array, n_quantizers: int | None) -> dict:
        """Held-out metrics at one bitrate, over `batch [B, T]`: DAC's mel distance (its seven
        resolutions, as `python -m jax_codec evaluate` reports it, whatever the training loss
        uses) and the reconstructions `audio [B, T]` (for the host-side SI-SDR and loudness
        difference, `training.loop.listener_metrics`, and TensorBoard).

        A stereo model's `batch` and `audio` are `[B, T, 2]`; its "mel" is the mean over the
        left and right channels, and "mel_side" the mel distance of the side signals."""
        x = batch.astype(jnp.float32)
        sr = self.codec.sample_rate
        if self.codec.channels > 1:
            y = self.codec.apply(gen_params, x, n_quantizers).audio.astype(jnp.float32)
            mel = L.multi_resolution_mel_loss(
                fold_channels(y)[..., 0], fold_channels(x)[..., 0], sr, power=1.0
            )
            side = STEREO_SIGNALS.index("side")
            mel_side = L.multi_resolution_mel_loss(
                stereo_signals(y)[side], stereo_signals(x)[side], sr, power=1.0
            )
            return {"mel": mel, "mel_side": mel_side, "audio": y}
        y = (
            self.codec.apply(gen_params, x[..., None], n_quantizers)
            .audio[..., 0]
            .astype(jnp.float32)
        )
        mel = L.multi_resolution_mel_loss(y, x, sr, power=1.0)
        return {"mel": mel, "audio": y}


def training_compiler_options(mesh: jax.sharding.Mesh) -> dict[str, Any]:
    """XLA options for the train step compiled over `mesh`.

    On CPU: XLA's older (non-MLIR) fusion emitters, which compile the train step faster and in
    less host memory with the same step time and losses (benchmarks/README.md, train_step.py).
    Inference and evaluation keep the MLIR emitters, which ran them faster; the init has its
    own options (`init_compiler_options`).
    Other platforms: no options.
    """
    if all(d.platform == "cpu" for d in mesh.devices.flat) and _cpu_option_known(
        "xla_cpu_use_fusion_emitters", False
    ):
        return {"xla_cpu_use_fusion_emitters": False}
    return {}


@functools.cache
def _cpu_option_known(name: str, value: Any) -> bool:
    """Whether this jaxlib's XLA:CPU accepts the option (a future one may drop it)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(0.0).compile()
        return True
    except Exception:  # jaxlib raises "No such compile option" as a runtime error
        logging.warning("XLA:CPU has no option %s; compiling without it.", name)
        return False


def init_compiler_options(mesh: jax.sharding.Mesh) -> dict[str, Any]:
    """XLA options for the state's init, which runs once: on CPU, LLVM at -O0, which compiles
    it several times faster (benchmarks/README.md); the values agree with an optimised build to
    float32 rounding. Other platforms: no options."""
    if all(d.platform == "cpu" for d in mesh.devices.flat) and _cpu_option_known(
        "xla_backend_optimization_level", 0
    ):
        return {"xla_backend_optimization_level": 0}
    return {}


def compile_train_step(trainer: Trainer, mesh: jax.sharding.Mesh, state_sharding: Any) -> Any:
    """`jax.jit` of the step over the mesh: state sharded as given (donated), batch split on B."""
    return jax.jit(
        trainer.train_step,
        in_shardings=(state_sharding, sh.batch_sharding(mesh), sh.replicated(mesh)),
        out_shardings=(state_sharding, sh.replicated(mesh)),
        donate_argnums=(0,),
        compiler_options=training_compiler_options(mesh),
    )
