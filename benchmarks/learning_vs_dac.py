r"""Learning against DAC's own training loop: same weights, same batches, same wall time.

  python benchmarks/learning_vs_dac.py --train_dir=/path/to/music/train \
      --heldout_dir=/path/to/music/heldout --minutes=10

Two training runs, one after the other (never concurrently), each in its own child process:

- **DAC**: a minimal PyTorch loop written from descript-audio-codec's modules and recipe (its
  scripts/train.py and conf/base.yml): `dac.model.DAC`, `dac.model.Discriminator` (MPD + MRD),
  `dac.nn.loss.MelSpectrogramLoss` (7 resolutions, as conf/base.yml) and `GANLoss`; loss weights
  mel 15, adv/feat 2, adv/gen 1, vq/commitment 0.25, vq/codebook 1; AdamW (lr `--lr`, betas
  (0.8, 0.99), torch's weight decay 0.01), ExponentialLR gamma 0.999996 for G and D;
  clip_grad_norm 1e3 (G) and 10 (D); order: G forward, D step on the detached reconstruction,
  then the G losses through the updated D, G step. `torch.set_num_threads(--threads)`.
- **ours**: jax_codec's train step as `jax_codec.training.loop` builds it (`Trainer`,
  `make_mesh`, `create_train_state`, `compile_train_step`, the state donated) with
  `configs/dac_44khz.py` set to the same sizes and recipe (no warmup, no dead-code restarts,
  only the DAC loss terms). JAX on CPU as it is.

Same start: the PyTorch DAC is built with `torch.manual_seed(--seed)` and its weights are
converted into ours (`jax_codec.convert.convert_state_dict`); the step-0 held-out
reconstructions of both sides are compared as a check. The discriminators are converted too
when jax_codec has a discriminator converter; otherwise ours start from our own init (the
output says which). Same data: the audio files of `--train_dir` and `--heldout_dir` (whole
tracks held out) are decoded once up front with `jax_codec.data.audio.read_file` (44.1 kHz
mono, soxr), and batch i is the same numpy array on both sides (random crops drawn from a
generator seeded with (`--seed`, i); crops quieter than -60 dBFS RMS are redrawn).

Same time: each side trains for `--minutes` of training wall time. Evaluation time is not
counted, nor are one-time costs, which are reported apart: our init, the train step's lower +
compile and the eval function's compile; PyTorch's `--torch_warmup` forward + backward passes
before training (TorchScript specialises DAC's Snake over its first calls; no optimizer step,
the RNG state restored). Each side evaluates its generator (eval mode, all
codebooks) on the same `--eval_crops` held-out crops of `--eval_seconds` at step 0, every
`--eval_every` steps, and at `--time_marks` equal fractions of the budget (the last one at the
end of the budget). The metrics are computed afterwards on the saved reconstructions with
`jax_codec.evaluation.metrics`: DAC's mel distance, its STFT distance, SI-SDR, and ViSQOL
(audio mode; skipped with a note when visqol-python is missing or `--no_visqol`).

Sizes (flags): DAC's structure at `configs/base.py:runlocal`'s size by default, with runlocal's
discriminators (MPD periods 2, 3, 5; MRD windows 1024, 512; width base 8, DAC's layer layout
scaled); `--periods=2,3,5,7,11 --fft_sizes=2048,1024,512 --disc_channels=32` is DAC's
`Discriminator` exactly.

Output: `benchmarks/results/learning_vs_dac_<date>.json` (or `--output`), a PNG plot next to
it (metrics vs step and vs training wall time, both codecs) and markdown tables on stdout.

Data (real music from Debian packages, installed by whoever runs this, never committed):
  sudo apt-get install hyperrogue-music asc-music
  mkdir -p /tmp/music/train /tmp/music/heldout
  ln -s /usr/share/hyperrogue/music/*.ogg /usr/share/games/asc/music/*.mp3 /tmp/music/train/
  cd /tmp/music && mv train/hr-savino-ocean.ogg train/hr3-mirror.ogg \
      train/time_to_strike.mp3 heldout/       # whole tracks held out
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 44100
HOP = 512  # DAC-44k's encoder strides (2, 4, 8, 8): crops are whole frames
TRAIN_SILENCE_DB = -60.0  # the product's data.silence_threshold_db
EVAL_SILENCE_DB = -40.0  # held-out crops: clearly audible music only
# DAC's conf/base.yml lambdas, and the same weights in our config.
LAMBDAS = {"mel": 15.0, "adv_feat": 2.0, "adv_gen": 1.0, "vq_commitment": 0.25, "vq_codebook": 1.0}
OUR_WEIGHTS = {"mel_weight", "adv_weight", "fm_weight", "commitment_weight", "codebook_weight"}
LR_GAMMA = 0.999996
METRICS = ("mel", "stft", "si_sdr", "visqol")
HIGHER_IS_BETTER = {"si_sdr", "visqol"}
SIDES = ("dac", "ours")
# Config keys that only some versions of jax_codec have, set when present.
OPTIONAL_KEYS = {
    "loss.fm_reduction": "sum",  # DAC sums feature matching over layers
    "loss.gan_start_step": 0,  # adversarial terms from step 0, as DAC
    "discriminator.mpd_pad": "dac",  # DAC pads p - T % p before folding
}
LABELS = {"dac": "DAC (PyTorch)", "ours": "jax_codec"}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train_dir", required=False, help="folder of training audio files")
    p.add_argument("--heldout_dir", required=False, help="folder of held-out audio files")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall time per side")
    p.add_argument("--encoder_dim", type=int, default=8)
    p.add_argument("--decoder_dim", type=int, default=96)
    p.add_argument("--latent_dim", type=int, default=64)
    p.add_argument("--n_codebooks", type=int, default=4)
    p.add_argument("--codebook_size", type=int, default=1024)
    p.add_argument("--quantizer_dropout", type=float, default=0.5)
    p.add_argument("--periods", default="2,3,5", help="MPD periods (DAC: 2,3,5,7,11)")
    p.add_argument("--fft_sizes", default="1024,512", help="MRD windows (DAC: 2048,1024,512)")
    p.add_argument(
        "--disc_channels",
        type=int,
        default=8,
        help="discriminator width base: 32 is dac.model.Discriminator exactly; smaller "
        "scales DAC's MPD/MRD widths (c, 4c, 16c, 32c, 32c / c) on both sides",
    )
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--segment_seconds", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=1e-4, help="G and D learning rate")
    p.add_argument("--eval_every", type=int, default=25, help="steps between evaluations")
    p.add_argument("--time_marks", type=int, default=4, help="evaluations at k/n of the budget")
    p.add_argument("--eval_crops", type=int, default=8)
    p.add_argument("--eval_seconds", type=float, default=2.0)
    p.add_argument("--log_every", type=int, default=10, help="steps between loss logs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--normalize_db",
        type=float,
        default=-18.0,
        help="level every training crop is brought to on both sides, as DAC's recipe and "
        "data.normalize do (jax_codec.levels; nan: the files' own levels)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument(
        "--torch_warmup",
        type=int,
        default=2,
        help="uncounted PyTorch forward+backward passes before training (no update)",
    )
    p.add_argument("--no_visqol", action="store_true")
    p.add_argument("--output", default="", help="JSON path (default benchmarks/results/...)")
    p.add_argument("--workdir", default="", help="scratch folder (default: a temp dir)")
    p.add_argument("--keep_workdir", action="store_true")
    p.add_argument("--_child", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args._child and not (args.train_dir and args.heldout_dir):
        p.error("--train_dir and --heldout_dir are required")
    return args


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def segment_length(seconds: float) -> int:
    n = int(seconds * SAMPLE_RATE) // HOP * HOP
    if n <= 0:
        raise SystemExit(f"--segment_seconds={seconds} is shorter than one frame ({HOP} samples)")
    return n


# --------------------------------------------------------------------------- data


def audio_files(folder: str) -> list[str]:
    from jax_codec.data.audio import AUDIO_EXTENSIONS

    files = sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS
    )
    if not files:
        raise SystemExit(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {folder}")
    return files


def decode_folder(folder: str) -> tuple[list[np.ndarray], list[dict]]:
    """Every file of `folder` as float32 mono at 44.1 kHz (our decoder: soundfile + soxr)."""
    from jax_codec.data.audio import BadAudio, probe, read_file

    tracks, info = [], []
    for path in audio_files(folder):
        try:
            src = probe(path)
            x = read_file(path, SAMPLE_RATE, 1)[:, 0]
        except BadAudio as e:
            print(f"  skipped {path}: {e}")
            continue
        tracks.append(np.ascontiguousarray(x, np.float32))
        info.append(
            {
                "file": os.path.basename(path),
                "seconds": round(len(x) / SAMPLE_RATE, 2),
                "source_rate": src.sample_rate,
                "source_channels": src.channels,
            }
        )
    return tracks, info


def rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


class Crops:
    """Batch i of training crops, the same array in every process (seeded with (seed, i))."""

    def __init__(
        self,
        audio: np.ndarray,
        offsets: np.ndarray,
        batch: int,
        length: int,
        seed: int,
        normalize_db: float = math.nan,
    ):
        self.audio, self.batch, self.length, self.seed = audio, batch, length, seed
        self.normalize_db = normalize_db
        self.starts, lengths = offsets[:-1], np.diff(offsets)
        usable = np.maximum(lengths - length, 0).astype(np.float64)
        if usable.sum() == 0:
            raise SystemExit("every training track is shorter than one crop")
        self.track_p = usable / usable.sum()  # each usable sample equally likely
        self.usable = usable.astype(np.int64)

    def __call__(self, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, i])
        out = np.empty((self.batch, self.length), np.float32)
        for row in range(self.batch):
            for _ in range(20):  # then keep the last draw, quiet or not
                t = rng.choice(len(self.track_p), p=self.track_p)
                s = self.starts[t] + rng.integers(0, self.usable[t] + 1)
                out[row] = self.audio[s : s + self.length]
                if rms_db(out[row]) > TRAIN_SILENCE_DB:
                    break
            if not math.isnan(self.normalize_db):
                from jax_codec import levels

                out[row] = levels.normalize(out[row], SAMPLE_RATE, self.normalize_db)[0]
        return out


def eval_crops(tracks: list[np.ndarray], n: int, length: int, seed: int) -> np.ndarray:
    """`[n, length]` held-out crops, round-robin over the tracks, clearly audible."""
    rng = np.random.default_rng([seed, 1_000_003])
    long = [t for t in tracks if len(t) > length]
    if not long:
        raise SystemExit("every held-out track is shorter than one evaluation crop")
    out = []
    for i in range(n):
        t = long[i % len(long)]
        for _ in range(50):
            s = int(rng.integers(0, len(t) - length + 1))
            crop = t[s : s + length]
            if rms_db(crop) > EVAL_SILENCE_DB:
                break
        out.append(crop)
    return np.stack(out).astype(np.float32)


def load_data(workdir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    audio = np.load(os.path.join(workdir, "train_audio.npy"), mmap_mode="r")
    offsets = np.load(os.path.join(workdir, "train_offsets.npy"))
    crops = np.load(os.path.join(workdir, "eval_crops.npy"))
    return audio, offsets, crops


# --------------------------------------------------------------------------- shared loop


class Run:
    """The training clock, evaluation schedule and records of one side (in its child)."""

    def __init__(self, args: argparse.Namespace, side: str, evaluate):
        self.args, self.side, self.evaluate = args, side, evaluate
        self.budget = args.minutes * 60.0
        self.n_marks = max(1, args.time_marks)
        self.next_mark = 1  # mark k is k / n_marks of the budget; the last one is the budget
        self.train_s, self.step = 0.0, 0
        self.first_step_s = None
        self.evals: list[dict] = []
        self.losses: list[dict] = []
        self.eval_s = 0.0

    def eval_now(self, reasons: list[str], marks: tuple[int, ...] = ()) -> None:
        t0 = time.perf_counter()
        recon = np.asarray(self.evaluate(), np.float32)
        self.eval_s += time.perf_counter() - t0
        name = f"{self.side}_recon_{len(self.evals):03d}.npy"
        np.save(os.path.join(self.args._workdir, name), recon)
        self.evals.append(
            {
                "step": self.step,
                "train_s": self.train_s,
                "reasons": reasons,
                "marks": list(marks),
                "recon": name,
            }
        )
        print(
            f"[{self.side}] eval at step {self.step}, {self.train_s:.1f} s ({', '.join(reasons)})",
            flush=True,
        )

    def after_step(self, seconds: float, losses: dict | None) -> bool:
        """Account one step; evaluate when due. False once the budget is spent."""
        if self.first_step_s is None:
            self.first_step_s = seconds
        self.train_s += seconds
        self.step += 1
        if losses is not None:
            self.losses.append({"step": self.step, "train_s": self.train_s, **losses})
        reasons, marks = [], []
        if self.step % self.args.eval_every == 0:
            reasons.append(f"every {self.args.eval_every} steps")
        while self.next_mark <= self.n_marks and self.train_s >= self.mark_s(self.next_mark):
            marks.append(self.next_mark)
            reasons.append(f"{self.mark_s(self.next_mark):.0f} s mark")
            self.next_mark += 1
        if reasons:
            self.eval_now(reasons, tuple(marks))
        return self.train_s < self.budget

    def mark_s(self, k: int) -> float:
        return self.budget * k / self.n_marks

    def summary(self) -> dict:
        return {
            "budget_s": self.budget,
            "n_marks": self.n_marks,
            "steps": self.step,
            "train_s": self.train_s,
            "steps_per_s": self.step / max(self.train_s, 1e-9),
            "first_step_s": self.first_step_s,
            "eval_s": self.eval_s,
            "evals": self.evals,
            "losses": self.losses,
            "peak_rss_mib": peak_rss_mib(),
        }


def log_due(args: argparse.Namespace, step: int) -> bool:
    """Whether the step about to run (0-based) logs its losses."""
    return (step + 1) % args.log_every == 0 or step == 0


# --------------------------------------------------------------------------- PyTorch DAC


def _torchaudio_stand_in() -> None:
    """dac/audiotools import torchaudio (and IPython) at module level; these paths use none of
    it."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        for key in [k for k in sys.modules if k == "torchaudio" or k.startswith("torchaudio.")]:
            del sys.modules[key]
        stub = types.ModuleType("torchaudio")
        stub.__version__ = "0.0+stub"
        sys.modules["torchaudio"] = stub
    # audiotools.post imports IPython.display.HTML for notebooks; a machine without IPython
    # (an accelerator image) gets a stand-in that these paths never call.
    try:
        import IPython.display  # noqa: F401
    except ImportError:
        ipython, display = types.ModuleType("IPython"), types.ModuleType("IPython.display")
        display.HTML = lambda *a, **k: None
        ipython.display = display
        sys.modules.update({"IPython": ipython, "IPython.display": display})


def dac_discriminator(periods: list[int], fft_sizes: list[int], channels: int):
    """`dac.model.Discriminator` (MPD + MRD, no MSD: DAC's `rates=[]`); below 32 channels the
    convolutions of its MPD and MRD modules are rebuilt with the same layout, narrower."""
    from dac.model.discriminator import MPD, MRD, Discriminator, WNConv2d
    from torch import nn

    disc = Discriminator(rates=[], periods=periods, fft_sizes=fft_sizes, sample_rate=SAMPLE_RATE)
    if channels == 32:
        return disc
    c = channels
    for d in disc.discriminators:
        if isinstance(d, MPD):
            widths, strides = (c, 4 * c, 16 * c, 32 * c, 32 * c), (3, 3, 3, 3, 1)
            ins = (1, *widths[:-1])
            d.convs = nn.ModuleList(
                WNConv2d(i, o, (5, 1), (s, 1), padding=(2, 0))
                for i, o, s in zip(ins, widths, strides, strict=True)
            )
            d.conv_post = WNConv2d(32 * c, 1, kernel_size=(3, 1), padding=(1, 0), act=False)
        elif isinstance(d, MRD):
            d.band_convs = nn.ModuleList(
                nn.ModuleList(
                    [
                        WNConv2d(2, c, (3, 9), (1, 1), padding=(1, 4)),
                        WNConv2d(c, c, (3, 9), (1, 2), padding=(1, 4)),
                        WNConv2d(c, c, (3, 9), (1, 2), padding=(1, 4)),
                        WNConv2d(c, c, (3, 9), (1, 2), padding=(1, 4)),
                        WNConv2d(c, c, (3, 3), (1, 1), padding=(1, 1)),
                    ]
                )
                for _ in d.bands
            )
            d.conv_post = WNConv2d(c, 1, (3, 3), (1, 1), padding=(1, 1), act=False)
    return disc


class DACTrainStep:
    """DAC's scripts/train.py step (without its AMP scaler and logging-only losses), on DAC's
    modules: D loss on the detached reconstruction, D step (clip 10), then the generator losses
    (conf/base.yml: 7-resolution log10 mel of power 1, GAN, feature matching, VQ) through the
    updated D, weighted by `LAMBDAS`, and the G step (clip 1000); AdamW (betas 0.8, 0.99) and
    ExponentialLR(`LR_GAMMA`) for both. `autocast`: a torch dtype for the forward passes
    (`torch.autocast` on the audio's device, as DAC's AMP), or None (float32).

    `step(x [B, 1, T])` -> (losses, G grad norm, D grad norm); `update=False` leaves the
    weights and optimizers as they were (a warm-up).
    """

    def __init__(self, gen, disc, lr: float, autocast=None):
        import torch
        from dac.nn.loss import GANLoss, MelSpectrogramLoss

        self.gen, self.disc, self.autocast = gen, disc, autocast
        self.mel_loss = MelSpectrogramLoss(
            n_mels=[5, 10, 20, 40, 80, 160, 320],
            window_lengths=[32, 64, 128, 256, 512, 1024, 2048],
            mel_fmin=[0.0] * 7,
            mel_fmax=[None] * 7,
            pow=1.0,
            clamp_eps=1e-5,
            mag_weight=0.0,
        )
        self.gan_loss = GANLoss(disc)
        self.opt_g = torch.optim.AdamW(gen.parameters(), lr=lr, betas=(0.8, 0.99))
        self.opt_d = torch.optim.AdamW(disc.parameters(), lr=lr, betas=(0.8, 0.99))
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.opt_g, gamma=LR_GAMMA)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.opt_d, gamma=LR_GAMMA)

    def zero_grad(self) -> None:
        self.opt_g.zero_grad()
        self.opt_d.zero_grad()

    def __call__(self, x, update: bool = True) -> tuple[dict, object, object]:
        import torch
        from audiotools import AudioSignal

        cast = (
            torch.autocast(x.device.type, self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        signal = AudioSignal(x, SAMPLE_RATE)
        with cast:
            out = self.gen(signal.audio_data, signal.sample_rate)
            recons = AudioSignal(out["audio"], signal.sample_rate)
            parts = {"adv_d": self.gan_loss.discriminator_loss(recons, signal)}
        self.opt_d.zero_grad()
        parts["adv_d"].backward()
        grad_d = torch.nn.utils.clip_grad_norm_(self.disc.parameters(), 10.0)
        if update:
            self.opt_d.step()
            self.sched_d.step()
        with cast:
            parts["mel"] = self.mel_loss(recons, signal)
            parts["adv_gen"], parts["adv_feat"] = self.gan_loss.generator_loss(recons, signal)
        parts["vq_commitment"] = out["vq/commitment_loss"]
        parts["vq_codebook"] = out["vq/codebook_loss"]
        parts["total_g"] = sum(LAMBDAS[k] * v for k, v in parts.items() if k in LAMBDAS)
        self.opt_g.zero_grad()
        parts["total_g"].backward()
        grad_g = torch.nn.utils.clip_grad_norm_(self.gen.parameters(), 1e3)
        if update:
            self.opt_g.step()
            self.sched_g.step()
        return parts, grad_g, grad_d


def child_dac(args: argparse.Namespace) -> dict:
    import warnings

    import torch

    _torchaudio_stand_in()

    # torch's old weight_norm (DAC's) and audiotools' STFT padding note: expected, not news.
    warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated")
    warnings.filterwarnings("ignore", message="stft_data changed shape")

    import dac

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    gen = dac.model.DAC(
        encoder_dim=args.encoder_dim,
        encoder_rates=[2, 4, 8, 8],
        latent_dim=args.latent_dim,
        decoder_dim=args.decoder_dim,
        decoder_rates=[8, 8, 4, 2],
        n_codebooks=args.n_codebooks,
        codebook_size=args.codebook_size,
        codebook_dim=8,
        quantizer_dropout=args.quantizer_dropout,
        sample_rate=SAMPLE_RATE,
    )
    disc = dac_discriminator(int_list(args.periods), int_list(args.fft_sizes), args.disc_channels)
    build_s = time.perf_counter() - t0
    for name, model in (("gen", gen), ("disc", disc)):
        sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        np.savez(os.path.join(args._workdir, f"init_{name}.npz"), **sd)

    train_step = DACTrainStep(gen, disc, args.lr)

    audio, offsets, crops = load_data(args._workdir)
    batches = Crops(
        audio,
        offsets,
        args.batch_size,
        segment_length(args.segment_seconds),
        args.seed,
        args.normalize_db,
    )
    held_out = torch.from_numpy(crops)[:, None]

    def evaluate() -> np.ndarray:
        gen.eval()
        with torch.no_grad():
            y = gen(held_out, SAMPLE_RATE)["audio"][:, 0].numpy()
        gen.train()
        return y

    gen.train()
    disc.train()
    # Warm-up, not counted (as our compile is not): TorchScript specialises DAC's Snake over
    # its first calls and the first STFTs/mel filters are built. No optimizer step, and the
    # RNG is restored, so training takes the same steps as without it.
    rng = torch.get_rng_state()
    t0 = time.perf_counter()
    for _ in range(args.torch_warmup):
        train_step(torch.from_numpy(batches(0))[:, None], update=False)
    train_step.zero_grad()
    warmup_s = time.perf_counter() - t0
    torch.set_rng_state(rng)

    run = Run(args, "dac", evaluate)
    run.eval_now(["start"])
    first_batch = None
    while True:
        x = batches(run.step)
        if first_batch is None:
            first_batch = float(np.sum(x, dtype=np.float64))
        logging = log_due(args, run.step)
        t0 = time.perf_counter()
        parts, grad_g, grad_d = train_step(torch.from_numpy(x)[:, None])
        seconds = time.perf_counter() - t0
        losses = None
        if logging:
            losses = {
                "loss/mel": parts["mel"],
                "loss/adv_g": parts["adv_gen"],
                "loss/fm": parts["adv_feat"],
                "loss/adv_d": parts["adv_d"],
                "loss/total_g": parts["total_g"],
                "vq/commitment": parts["vq_commitment"],
                "vq/codebook": parts["vq_codebook"],
                "norm/grad_g": grad_g,
                "norm/grad_d": grad_d,
            }
            losses = {k: float(v.detach()) for k, v in losses.items()}
        if not run.after_step(seconds, losses):
            break
    n_gen = sum(p.numel() for p in gen.parameters())
    n_disc = sum(p.numel() for p in disc.parameters())
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "params_gen_m": n_gen / 1e6,
        "params_disc_m": n_disc / 1e6,
        "build_s": build_s,
        "warmup_s": warmup_s,
        "warmup_steps": args.torch_warmup,
        "first_batch_sum": first_batch,
        **run.summary(),
    }


# --------------------------------------------------------------------------- ours


def our_config(args: argparse.Namespace, segment: int):
    """configs/dac_44khz.py at the chosen sizes with DAC's training recipe."""
    from jax_codec.config import apply_overrides, load_config

    config = load_config(os.path.join(ROOT, "configs", "dac_44khz.py"))
    o = {
        "model.encoder_width": args.encoder_dim,
        "model.decoder_width": args.decoder_dim,
        "model.latent_dim": args.latent_dim,
        "model.vq_strides": (1,) * args.n_codebooks,
        "model.codebook_size": args.codebook_size,
        "model.codebook_dim": 8,
        "model.quantizer_dropout": args.quantizer_dropout,
        "model.dtype": "float32",
        "discriminator.kinds": ("mpd", "mrd"),
        "discriminator.periods": tuple(int_list(args.periods)),
        "discriminator.mrd_window_lengths": tuple(int_list(args.fft_sizes)),
        "discriminator.channels": args.disc_channels,
        "discriminator.normalize_input": True,
        "loss.mel_weight": LAMBDAS["mel"],
        "loss.mel_window_lengths": (32, 64, 128, 256, 512, 1024, 2048),
        "loss.mel_n_mels": (5, 10, 20, 40, 80, 160, 320),
        "loss.mel_power": 1.0,
        "loss.adv_weight": LAMBDAS["adv_gen"],
        "loss.fm_weight": LAMBDAS["adv_feat"],
        "loss.commitment_weight": LAMBDAS["vq_commitment"],
        "loss.codebook_weight": LAMBDAS["vq_codebook"],
        "loss.adversarial": "lsgan",
        "loss.balancer": False,
        "optim.learning_rate": args.lr,
        "optim.disc_learning_rate": args.lr,
        "optim.b1": 0.8,
        "optim.b2": 0.99,
        "optim.weight_decay": 0.01,  # torch AdamW's default
        "optim.warmup_steps": 0,
        "optim.decay_rate": LR_GAMMA,
        "optim.clip_norm": 1000.0,
        "optim.disc_clip_norm": 10.0,
        "train.batch_size": args.batch_size,
        "train.segment_seconds": (segment + 0.5) / SAMPLE_RATE,
        "train.seed": args.seed,
        "train.ema_decay": 0.0,
        "train.dead_code_threshold": 0.0,
    }
    # Every other loss term off, whatever terms the config has grown.
    for key in config.loss:
        if key.endswith("_weight") and key not in OUR_WEIGHTS:
            o[f"loss.{key}"] = 0.0
    # Keys that only some versions of the config have (the note in the output lists them).
    applied_optional = {}
    for key, value in OPTIONAL_KEYS.items():
        group, leaf = key.split(".")
        if leaf in config[group]:
            o[key] = value
            applied_optional[key] = value
    apply_overrides(config, {k: repr(v) for k, v in o.items()})
    return config, applied_optional


def discriminator_converter():
    """jax_codec's DAC discriminator converter, `(state_dict, config) -> {'params': ...}`, or
    None in a version without one."""
    try:
        from jax_codec.convert.discriminator import convert_discriminator_state_dict
    except ImportError:
        return None
    return convert_discriminator_state_dict


def child_ours(args: argparse.Namespace) -> dict:
    import jax

    from jax_codec.convert import convert_state_dict
    from jax_codec.convert.finetune import replace_generator
    from jax_codec.data.pipeline import make_global_batch
    from jax_codec.training import sharding as sh
    from jax_codec.training.loop import validate_run
    from jax_codec.training.state_init import create_train_state
    from jax_codec.training.step import Trainer, compile_train_step

    segment = segment_length(args.segment_seconds)
    config, optional = our_config(args, segment)
    mesh = sh.make_mesh(config.mesh)
    validate_run(config, mesh)
    trainer = Trainer(config)
    assert trainer.segment == segment, (trainer.segment, segment)
    init_key, step_key = jax.random.split(jax.random.key(int(config.train.seed)))

    t0 = time.perf_counter()
    state, shardings = create_train_state(trainer, mesh, init_key)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0

    gen_sd = dict(np.load(os.path.join(args._workdir, "init_gen.npz")))
    state = replace_generator(state, convert_state_dict("dac", gen_sd, config), "DAC init")
    disc_init = "ours (fresh): jax_codec has no discriminator converter"
    convert = discriminator_converter()
    if convert is not None:
        disc_sd = dict(np.load(os.path.join(args._workdir, "init_disc.npz")))
        try:
            params = convert(disc_sd, config)
            state = state.replace(
                disc_params=jax.tree.map(
                    lambda old, new: jax.device_put(np.asarray(new, old.dtype), old.sharding),
                    state.disc_params,
                    params,
                )
            )
            disc_init = f"converted from DAC's ({convert.__module__}.{convert.__name__})"
        except Exception as e:  # a layout this version cannot convert: say so, keep ours
            disc_init = (
                f"ours (fresh): {convert.__module__}.{convert.__name__} failed: "
                f"{type(e).__name__}: {str(e)[:300]}"
            )
            print(f"[ours] WARNING: {disc_init}", flush=True)
    print(f"[ours] discriminator init: {disc_init}", flush=True)

    audio, offsets, crops = load_data(args._workdir)
    batches = Crops(audio, offsets, args.batch_size, segment, args.seed, args.normalize_db)
    batch_sharding = sh.batch_sharding(mesh)

    t0 = time.perf_counter()
    lowered = compile_train_step(trainer, mesh, shardings).lower(
        state, make_global_batch(batches(0), batch_sharding), step_key
    )
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_step = lowered.compile()
    compile_s = time.perf_counter() - t0

    codec = trainer.codec
    eval_fn = jax.jit(lambda p, x: codec.apply(p, x[..., None]).audio[..., 0])
    held_out = jax.device_put(crops)
    t0 = time.perf_counter()
    eval_fn = eval_fn.lower(state.gen_params, held_out).compile()
    eval_compile_s = time.perf_counter() - t0

    def evaluate() -> np.ndarray:
        return np.asarray(jax.device_get(eval_fn(state.gen_params, held_out)))

    run = Run(args, "ours", evaluate)
    run.eval_now(["start"])
    first_batch = None
    while True:
        x = batches(run.step)
        if first_batch is None:
            first_batch = float(np.sum(x, dtype=np.float64))
        logging = log_due(args, run.step)
        t0 = time.perf_counter()
        batch = make_global_batch(x, batch_sharding)
        state, metrics = train_step(state, batch, step_key)
        # Wait for this step (a scalar) so the clock measures it; metrics fetched on log steps.
        metrics["loss/total_g"].block_until_ready()
        seconds = time.perf_counter() - t0
        losses = None
        if logging:
            keys = (
                "loss/mel",
                "loss/adv_g",
                "loss/fm",
                "loss/adv_d",
                "loss/total_g",
                "vq/commitment",
                "vq/codebook",
                "norm/grad_g",
                "norm/grad_d",
                "train/nonfinite_steps",
            )
            got = jax.device_get({k: metrics[k] for k in keys if k in metrics})
            losses = {k: float(v) for k, v in got.items()}
        if not run.after_step(seconds, losses):
            break
    count = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))
    return {
        "jax": jax.__version__,
        "devices": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
        "params_gen_m": count(state.gen_params) / 1e6,
        "params_disc_m": count(state.disc_params) / 1e6,
        "discriminator_init": disc_init,
        "config_optional_keys": optional,
        "init_s": init_s,
        "lower_s": lower_s,
        "compile_s": lower_s + compile_s,
        "train_step_compile_s": compile_s,
        "eval_compile_s": eval_compile_s,
        "first_batch_sum": first_batch,
        **run.summary(),
    }


def child_main(args: argparse.Namespace) -> None:
    load_start = os.getloadavg()[0]
    result = child_dac(args) if args._child == "dac" else child_ours(args)
    result["loadavg_1min_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    with open(os.path.join(args._workdir, f"{args._child}.json"), "w") as f:
        json.dump(result, f)


# --------------------------------------------------------------------------- parent


def run_child(args: argparse.Namespace, side: str, workdir: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), f"--_child={side}", f"--workdir={workdir}"]
    print(f"\n=== {LABELS[side]}: training for {args.minutes:g} min ===", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"the {side} run failed (exit code {proc.returncode})")
    with open(os.path.join(workdir, f"{side}.json")) as f:
        result = json.load(f)
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def score(crops: np.ndarray, recon: np.ndarray, use_visqol: bool) -> dict:
    """Mean over the crops of each held-out metric (jax_codec.evaluation.metrics)."""
    from jax_codec.evaluation import metrics as M

    rows = {k: [] for k in METRICS}
    for ref, est in zip(crops, recon, strict=True):
        n = min(len(ref), len(est))
        ref, est = ref[:n], est[:n]
        rows["mel"].append(M.mel_distance(ref, est, SAMPLE_RATE))
        rows["stft"].append(M.stft_distance(ref, est, SAMPLE_RATE))
        rows["si_sdr"].append(M.si_sdr(ref, est))
        if use_visqol:
            rows["visqol"].append(M.visqol(ref, est, SAMPLE_RATE))
    return {k: float(np.mean(v)) if v else None for k, v in rows.items()}


def visqol_available() -> tuple[bool, str]:
    from jax_codec.evaluation import metrics as M

    try:
        M._visqol_api("audio")
        return True, ""
    except M.MissingDependencyError as e:
        return False, str(e)


def fmt(v, digits=3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def tables(results: dict, metric_names: list[str]) -> tuple[str, list[dict], list[dict]]:
    """Markdown tables: at equal training wall time, and at equal step counts."""
    head = "".join(f" {m} DAC | {m} ours |" for m in metric_names)
    lines, by_time, by_step = [], [], []

    def cells(a: dict, b: dict) -> str:
        return "".join(f" {fmt(a['metrics'][m])} | {fmt(b['metrics'][m])} |" for m in metric_names)

    def at_mark(side: str) -> dict[int, dict]:
        return {k: e for e in results[side]["evals"] for k in e["marks"]}

    lines.append(
        "At equal training wall time (each side's evaluation right after its training clock "
        "passed the mark; step and training seconds in brackets):\n"
    )
    lines.append("| mark | DAC step (s) | ours step (s) |" + head)
    lines.append("|---|---|---|" + "---|---|" * len(metric_names))
    start = {s: results[s]["evals"][0] for s in SIDES}
    lines.append("| start | 0 (0) | 0 (0) |" + cells(start["dac"], start["ours"]))
    dac_marks, our_marks = at_mark("dac"), at_mark("ours")
    budget = results["dac"]["budget_s"]
    n = results["dac"]["n_marks"]
    for k in sorted(set(dac_marks) & set(our_marks)):
        a, b = dac_marks[k], our_marks[k]
        mark = f"{budget * k / n:.0f} s" + (" (budget)" if k == n else "")
        lines.append(
            f"| {mark} | {a['step']} ({a['train_s']:.0f}) | {b['step']} ({b['train_s']:.0f}) |"
            + cells(a, b)
        )
        by_time.append({"mark_s": budget * k / n, "dac": a, "ours": b})
    lines.append("\nAt equal step counts (training wall time in brackets):\n")
    lines.append("| step | DAC s | ours s |" + head)
    lines.append("|---|---|---|" + "---|---|" * len(metric_names))
    ours_at = {e["step"]: e for e in results["ours"]["evals"]}
    seen = set()
    for a in results["dac"]["evals"]:
        b = ours_at.get(a["step"])
        if b is None or a["step"] in seen:
            continue
        seen.add(a["step"])
        lines.append(f"| {a['step']} | {a['train_s']:.0f} | {b['train_s']:.0f} |" + cells(a, b))
        by_step.append({"step": a["step"], "dac": a, "ours": b})
    return "\n".join(lines), by_time, by_step


def plot(results: dict, metric_names: list[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(metric_names), 2, figsize=(11, 2.6 * len(metric_names)), squeeze=False
    )
    for row, m in enumerate(metric_names):
        for col, x_key in enumerate(("step", "train_s")):
            ax = axes[row][col]
            for side, style in (("dac", "o-"), ("ours", "s-")):
                ev = sorted(results[side]["evals"], key=lambda e: (e["train_s"], e["step"]))
                xs = [e[x_key] for e in ev]
                ys = [e["metrics"][m] for e in ev]
                ax.plot(xs, ys, style, ms=3, label=LABELS[side])
            ax.set_xlabel("step" if x_key == "step" else "training wall time (s)")
            better = "higher" if m in HIGHER_IS_BETTER else "lower"
            ax.set_ylabel(f"{m} ({better} is better)")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.legend()
    fig.suptitle("Held-out metrics: DAC's PyTorch loop vs jax_codec, same init, data and time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args._child:  # the parent's arguments, as it saved them
        with open(os.path.join(args.workdir, "args.json")) as f:
            saved = json.load(f)
        child_main(argparse.Namespace(**saved, _child=args._child, _workdir=args.workdir))
        return
    command = "python " + shlex.join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    print("command:", command, flush=True)
    workdir = args.workdir or tempfile.mkdtemp(prefix="learning_vs_dac_")
    os.makedirs(workdir, exist_ok=True)
    saved = {
        k: v
        for k, v in vars(args).items()
        if not k.startswith("_") and k not in ("workdir", "keep_workdir", "output")
    }
    with open(os.path.join(workdir, "args.json"), "w") as f:
        json.dump(saved, f)

    t0 = time.perf_counter()
    train, train_info = decode_folder(args.train_dir)
    heldout, heldout_info = decode_folder(args.heldout_dir)
    offsets = np.cumsum([0] + [len(t) for t in train]).astype(np.int64)
    np.save(os.path.join(workdir, "train_audio.npy"), np.concatenate(train))
    np.save(os.path.join(workdir, "train_offsets.npy"), offsets)
    eval_len = segment_length(args.eval_seconds)
    crops = eval_crops(heldout, args.eval_crops, eval_len, args.seed)
    np.save(os.path.join(workdir, "eval_crops.npy"), crops)
    del train, heldout
    decode_s = time.perf_counter() - t0
    print(
        f"data: {len(train_info)} training tracks ({offsets[-1] / SAMPLE_RATE / 60:.1f} min), "
        f"{len(heldout_info)} held-out tracks, {len(crops)} held-out crops of "
        f"{eval_len / SAMPLE_RATE:.2f} s; decoded in {decode_s:.1f} s",
        flush=True,
    )

    results = {side: run_child(args, side, workdir) for side in SIDES}

    use_visqol, visqol_note = (
        (False, "skipped (--no_visqol)") if args.no_visqol else visqol_available()
    )
    if not use_visqol and not args.no_visqol:
        visqol_note = f"skipped: {visqol_note}"
    metric_names = [m for m in METRICS if m != "visqol" or use_visqol]
    print(f"\nscoring {sum(len(r['evals']) for r in results.values())} evaluations ...", flush=True)
    t0 = time.perf_counter()
    for side in SIDES:
        for e in results[side]["evals"]:
            recon = np.load(os.path.join(workdir, e["recon"]))
            e["metrics"] = score(crops, recon, use_visqol)
    score_s = time.perf_counter() - t0
    start_diff = float(
        np.max(
            np.abs(
                np.load(os.path.join(workdir, results["dac"]["evals"][0]["recon"]))
                - np.load(os.path.join(workdir, results["ours"]["evals"][0]["recon"]))
            )
        )
    )
    same_batches = results["dac"]["first_batch_sum"] == results["ours"]["first_batch_sum"]

    md, by_time, by_step = tables(results, metric_names)
    d, o = results["dac"], results["ours"]
    summary = [
        f"| | DAC (PyTorch {d['torch']}, {d['threads']} threads) | jax_codec (JAX {o['jax']}, {o['devices']}) |",
        "|---|---|---|",
        f"| params G / D | {d['params_gen_m']:.3f}M / {d['params_disc_m']:.3f}M | {o['params_gen_m']:.3f}M / {o['params_disc_m']:.3f}M |",
        f"| steps in {args.minutes:g} min of training | {d['steps']} | {o['steps']} |",
        f"| steps/s | {d['steps_per_s']:.3f} | {o['steps_per_s']:.3f} |",
        f"| first step (counted) | {d['first_step_s']:.2f} s | {o['first_step_s']:.2f} s |",
        f"| audio s trained per s | {d['steps_per_s'] * args.batch_size * segment_length(args.segment_seconds) / SAMPLE_RATE:.3f} | {o['steps_per_s'] * args.batch_size * segment_length(args.segment_seconds) / SAMPLE_RATE:.3f} |",
        f"| not in training time | warm-up {d['warmup_s']:.1f} s ({d['warmup_steps']} passes, no update) | init {o['init_s']:.1f} s, step lower+compile {o['compile_s']:.1f} s, eval compile {o['eval_compile_s']:.1f} s |",
        f"| evaluation time (not counted) | {d['eval_s']:.1f} s | {o['eval_s']:.1f} s |",
        f"| child process wall time | {d['process_wall_s']:.0f} s | {o['process_wall_s']:.0f} s |",
        f"| peak RSS | {d['peak_rss_mib']:.0f} MiB | {o['peak_rss_mib']:.0f} MiB |",
        f"| 1-min load average, start / end | {' / '.join(map(str, d['loadavg_1min_start_end']))} "
        f"| {' / '.join(map(str, o['loadavg_1min_start_end']))} |",
    ]
    notes = [
        f"step-0 held-out reconstructions, max abs difference DAC vs ours: {start_diff:.2e} "
        "(same generator weights)",
        f"same training batches: {'yes' if same_batches else 'NO'} (checksum of batch 0)",
        f"our discriminators: {o['discriminator_init']}",
        "DAC-matching config keys this jax_codec version has: "
        + (", ".join(f"{k}={v!r}" for k, v in o["config_optional_keys"].items()) or "none")
        + "; lacking: "
        + (", ".join(k for k in OPTIONAL_KEYS if k not in o["config_optional_keys"]) or "none"),
        "step-1 losses DAC / ours (same weights and batch; mel and adv_g also depend on the "
        "quantizer-dropout draws): "
        + ", ".join(
            f"{k.split('/')[1]} {d['losses'][0][k]:.4f} / {o['losses'][0][k]:.4f}"
            for k in ("loss/adv_d", "loss/adv_g", "loss/mel")
            if d["losses"] and o["losses"] and k in d["losses"][0] and k in o["losses"][0]
        ),
        f"ViSQOL: {'computed (visqol-python, audio mode)' if use_visqol else visqol_note}",
    ]
    busiest = max(v for side in SIDES for v in results[side]["loadavg_1min_start_end"])
    if busiest > 1.5:
        notes.append(
            f"WARNING: the host was busy (1-min load average up to {busiest:.1f} on "
            f"{os.cpu_count()} CPUs). PyTorch's {d['threads']} OpenMP threads slow down far more "
            "than XLA's thread pool when other jobs share the cores, so the comparison per "
            "wall time is not meaningful; rerun on an idle machine (or compare with "
            "--threads=1)."
        )
    print("\n" + "\n".join(summary) + "\n\n" + md + "\n\n" + "\n".join(f"- {n}" for n in notes))

    date = datetime.date.today().isoformat()
    out = args.output or os.path.join(ROOT, "benchmarks", "results", f"learning_vs_dac_{date}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    png = os.path.splitext(out)[0] + ".png"
    plot(results, metric_names, png)
    report = {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        },
        "args": saved,
        "segment_samples": segment_length(args.segment_seconds),
        "data": {
            "train": train_info,
            "heldout": heldout_info,
            "eval_crop_samples": eval_len,
            "decode_s": decode_s,
        },
        "metrics": metric_names,
        "visqol": "computed" if use_visqol else visqol_note,
        "score_s": score_s,
        "start_recon_max_abs_diff": start_diff,
        "same_batches": same_batches,
        "results": results,
        "at_equal_wall_time": [
            {
                "mark_s": r["mark_s"],
                **{s: {k: r[s][k] for k in ("step", "train_s", "metrics")} for s in SIDES},
            }
            for r in by_time
        ],
        "at_equal_steps": [
            {"step": r["step"], **{s: {k: r[s][k] for k in ("train_s", "metrics")} for s in SIDES}}
            for r in by_step
        ],
        "markdown": "\n".join(summary) + "\n\n" + md,
        "notes": notes,
        "plot": os.path.basename(png),
    }
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"\nwrote {out} and {png}")
    if args.keep_workdir:
        print(f"kept {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
