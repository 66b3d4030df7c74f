r"""Input-pipeline throughput against the train step's appetite, and folder indexing time.

  python benchmarks/data_pipeline.py                      # throughput + indexing 10,000 files
  python benchmarks/data_pipeline.py --step_config=configs/base.py --step_batch=2

1. Throughput: a generated folder of FLAC songs (half 44.1 kHz mono, half 48 kHz stereo, so
   resampling and mixdown are on the path) read through `build_train_data` with the config's
   batch, segment and augmentation. Reports audio seconds delivered per wall second and the
   process CPU time per wall second (1.0 = one core) for each `--threads` setting.
2. The reference: the audio seconds per second the train step of `--step_config` consumes,
   measured back to back in this process (compile excluded) as benchmarks/train_step.py does.
   The ratio is the headroom (target: at least 5x, within one core).
3. Indexing: `--index_files` short wav files, indexed cold (with and without the content check)
   and again from the cache.
4. Prepared vs folder: the same songs written once with `jax_codec.data.prepare` (at the model's
   rate and channels), then random segment-length windows read from one thread through
   `Clips.read` (decoding only), and the whole pipeline with `data.num_threads=1`, for both.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

from jax_codec.config import apply_overrides, load_config
from jax_codec.data import pipeline
from jax_codec.data.prepared import PreparedClips, write_prepared
from jax_codec.data.sources import FolderClips
from jax_codec.data.synthetic import SyntheticMusic


def make_songs(root: str, n: int, seconds: float) -> None:
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        path = os.path.join(root, f"song{i:03d}.flac")
        if os.path.exists(path):
            continue
        sr, ch = (44100, 1) if i % 2 == 0 else (48000, 2)
        x = SyntheticMusic(sr, seconds, seed=i, channels=ch)[0]
        sf.write(path, x, sr)


def pipeline_rate(config, sample_rate: int, segment: int, batches: int) -> dict:
    data = pipeline.build_train_data(config, sample_rate, segment)
    it = iter(data.dataset)
    next(it)  # threads started, first files opened
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        b = next(it)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    audio_s = batches * b.shape[0] * b.shape[1] / sample_rate
    return {"audio_s_per_s": audio_s / wall, "cores": cpu / wall, "batch_ms": 1e3 * wall / batches}


def step_rate(config_arg: str, batch: int, steps: int) -> float:
    sys.path.insert(0, os.path.dirname(__file__))
    import train_step  # benchmarks/train_step.py

    args = argparse.Namespace(
        config=config_arg, steps=steps, batch_size=batch, segment_seconds=None
    )
    return float(train_step.run(args)["audio_s_per_s"])


def index_times(root: str, n: int) -> dict:
    if not os.path.isdir(root) or len(os.listdir(root)) < n:
        os.makedirs(root, exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(n):
            x = (0.1 * rng.standard_normal(8820)).astype(np.float32)  # 0.2 s
            sf.write(os.path.join(root, f"clip{i:05d}.wav"), x, 44100)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, check in (("header only", False), ("with content check", True)):
            t = time.perf_counter()
            FolderClips(root, 44100, 1, cache_dir=os.path.join(cache, label), content_check=check)
            out[f"cold, {label}"] = time.perf_counter() - t
        t = time.perf_counter()
        c = FolderClips(root, 44100, 1, cache_dir=os.path.join(cache, "with content check"))
        out["cached re-index"] = time.perf_counter() - t
        assert c.index_stats["scanned"] == 0, c.index_stats
    return out


def read_rate(clips, segment: int, reads: int) -> float:
    """Audio seconds per second of random `segment`-long windows read in this thread."""
    rng = np.random.default_rng(0)
    picks = [int(rng.integers(len(clips))) for _ in range(reads)]
    starts = [int(rng.integers(max(1, clips.frames(i) - segment))) for i in picks]
    clips.read(picks[0], starts[0], segment)  # files / shards opened once
    t = time.perf_counter()
    for i, start in zip(picks, starts):
        clips.read(i, start, segment)
    return reads * segment / clips.sample_rate / (time.perf_counter() - t)


def prepared_vs_folder(config, songs: str, workdir: str, sr: int, segment: int, batches: int):
    channels = int(config.data.channels)
    out = os.path.join(workdir, f"prepared-{sr}-{channels}ch")
    t = time.perf_counter()
    write_prepared(songs, out, sr, channels, overwrite=True)
    print(f"prepared vs folder (1 thread): writing took {time.perf_counter() - t:.1f} s")
    for label, spec, clips in (
        ("folder", f"folder:{songs}", FolderClips(songs, sr, channels, content_check=False)),
        ("prepared", f"prepared:{out}", PreparedClips(out, sr, channels)),
    ):
        raw = read_rate(clips, segment, 400)
        apply_overrides(config, {"data.source": spec, "data.num_threads": "1"})
        r = pipeline_rate(config, sr, segment, batches)
        print(
            f"  {label}: Clips.read {raw:.0f} audio s/s; pipeline {r['audio_s_per_s']:.1f} "
            f"audio s/s, {r['cores']:.2f} cores",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/base.py", help="batch/segment/augment of the data")
    p.add_argument("--step_config", default="configs/base.py", help="train step to compare with")
    p.add_argument("--step_batch", type=int, default=2, help="batch of the reference step")
    p.add_argument("--step_steps", type=int, default=2)
    p.add_argument("--no_step", action="store_true", help="skip the train-step reference")
    p.add_argument("--songs", type=int, default=16)
    p.add_argument("--song_seconds", type=float, default=20.0)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--threads", default="0,1,2")
    p.add_argument("--index_files", type=int, default=10_000)
    p.add_argument("--no_prepared", action="store_true", help="skip prepared vs folder")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "jax_codec_data_bench"))
    args = p.parse_args()
    print("$ python " + shlex.join(sys.argv), flush=True)

    songs = os.path.join(args.workdir, "songs")
    make_songs(songs, args.songs, args.song_seconds)
    config = load_config(args.config)
    apply_overrides(config, {"data.source": f"folder:{songs}"})
    sr = int(config.model.sample_rate)
    hop = int(np.prod(config.model.encoder_strides)) * int(np.prod(config.model.vq_strides))
    segment = int(config.train.segment_seconds * sr) // hop * hop
    print(
        f"data: {args.songs} FLAC songs x {args.song_seconds:g} s, batch "
        f"{config.train.batch_size} x {segment} samples, augmentation on"
    )
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        apply_overrides(config, {"data.num_threads": str(threads)})
        r = pipeline_rate(config, sr, segment, args.batches)
        rows.append((threads, r))
        print(
            f"  threads={threads}: {r['audio_s_per_s']:.1f} audio s/s, {r['cores']:.2f} cores, "
            f"{r['batch_ms']:.1f} ms/batch",
            flush=True,
        )
    if not args.no_step:
        need = step_rate(args.step_config, args.step_batch, args.step_steps)
        print(
            f"train step ({args.step_config}, batch {args.step_batch}) consumes {need:.4f} audio s/s"
        )
        for threads, r in rows:
            print(f"  threads={threads}: pipeline / step = {r['audio_s_per_s'] / need:.0f}x")
    if not args.no_prepared:
        prepared_vs_folder(config, songs, args.workdir, sr, segment, args.batches)
    if args.index_files:
        print(f"indexing {args.index_files} files of 0.2 s:")
        for k, v in index_times(os.path.join(args.workdir, "many"), args.index_files).items():
            print(f"  {k}: {v:.2f} s")


if __name__ == "__main__":
    main()
