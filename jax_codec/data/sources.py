"""Random-access audio sources: a list of clips, each read by window at the model's rate.

Every source (folder, prepared, TFDS, synthetic) is a `Clips`: ``len(clips)`` clips, the length
of clip ``i`` in frames at the target rate, and ``read(i, start, length)`` returning float32
``[n, channels]`` (``n <= length``; shorter only at the end of a clip). A read that fails raises
`BadAudio`; the pipeline counts it and moves on.

`SkipReport` collects what indexing skipped or converted, for the summary printed at start.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import time

import numpy as np

from jax_codec.data import audio
from jax_codec.data.audio import BadAudio

INDEX_VERSION = 1


@dataclasses.dataclass
class SkipReport:
    """Files skipped (by reason, with paths) and converted (by kind, counted) by a source."""

    source: str = ""
    skipped: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    converted: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    ignored: int = 0  # files that are not audio at all (by extension)
    used: int = 0
    seconds: float = 0.0

    def skip(self, reason: str, path: str) -> None:
        self.skipped[reason].append(path)

    @property
    def num_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self, max_paths: int = 3) -> str:
        lines = [
            f"data source {self.source}: {self.used} clips, {_duration(self.seconds)} of audio"
            + (f"; {self.ignored} non-audio files ignored" if self.ignored else "")
        ]
        for kind, n in sorted(self.converted.items()):
            lines.append(f"  converted: {n} {kind}")
        if self.skipped:
            lines.append(f"  SKIPPED {self.num_skipped} files:")
            for reason, paths in sorted(self.skipped.items()):
                shown = ", ".join(paths[:max_paths]) + (" ..." if len(paths) > max_paths else "")
                lines.append(f"    {len(paths)} {reason}: {shown}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "used": self.used,
            "seconds": self.seconds,
            "ignored": self.ignored,
            "converted": dict(self.converted),
            "skipped": {k: list(v) for k, v in self.skipped.items()},
        }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Clips:
    """Base class of sources: see the module docstring."""

    name: str = ""
    sample_rate: int
    channels: int
    report: SkipReport

    def __len__(self) -> int:
        raise NotImplementedError

    def frames(self, i: int) -> int:
        raise NotImplementedError

    def read(self, i: int, start: int, length: int) -> np.ndarray:
        raise NotImplementedError

    def all_frames(self) -> np.ndarray:
        return np.array([self.frames(i) for i in range(len(self))], np.int64)


class SyntheticClips(Clips):
    """The built-in procedural music (`SyntheticMusic`): each clip is one rendered excerpt,
    mono, or with `channels=2` rendered in stereo (instruments panned apart, so L != R)."""

    def __init__(self, sample_rate: int, channels: int, segment: int, seed: int):
        from jax_codec.data.synthetic import SyntheticMusic

        self.name = "synthetic"
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment = segment
        self._music = SyntheticMusic(
            sample_rate=sample_rate,
            segment_seconds=segment / sample_rate,
            seed=seed,
            channels=2 if channels == 2 else 1,
        )
        self.report = SkipReport(source="synthetic", used=len(self._music))
        self.report.seconds = len(self._music) * segment / sample_rate

    def __len__(self) -> int:
        return len(self._music)

    def frames(self, i: int) -> int:
        return self.segment

    def all_frames(self) -> np.ndarray:
        return np.full(len(self), self.segment, np.int64)

    def read(self, i: int, start: int, length: int) -> np.ndarray:
        x = np.asarray(self._music[i], np.float32)[start : start + length]
        return audio.convert_channels(x, self.channels)


# --------------------------------------------------------------------------- folder


def local_audio_path(spec: str) -> str:
    """The path of a `--data` spec that names audio files: `folder:PATH`, or a plain PATH.

    Raises ValueError for the other source kinds (`prepared:`, `tfds:`, `synthetic`), which
    hold no audio files to read one by one.
    """
    kind, sep, arg = spec.partition(":")
    if kind == "folder" and sep:
        if not arg:
            raise ValueError("--data folder: needs a PATH, e.g. --data folder:songs/")
        return arg
    other = spec == "synthetic" or (sep and kind in ("prepared", "tfds"))
    if other and not os.path.exists(spec):
        raise ValueError(
            f"--data {spec}: this command reads audio files; give folder:PATH or a plain path "
            "(a file or a folder)"
        )
    return spec


def _list_files(root: str) -> list[str]:
    """Relative paths of all files under `root`, sorted (identical on every host)."""
    if audio.is_remote(root):
        from etils import epath

        base = epath.Path(root)
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        for name in filenames:
            out.append(name if rel == "." else os.path.join(rel, name))
    return sorted(out)


def _stat(path: str) -> tuple[int, float]:
    if audio.is_remote(path):
        from etils import epath

        st = epath.Path(path).stat()
        return int(st.length), float(st.mtime)
    st = os.stat(path)
    return int(st.st_size), float(st.st_mtime)


def _index_one(path: str, content_check: bool) -> dict:
    """Index entry for one file: header facts (+ peak/rms/finite), or {"error": reason}."""
    try:
        info = audio.probe(path)
        entry = {"frames": info.frames, "sr": info.sample_rate, "ch": info.channels}
        if content_check:
            peak, rms, finite = audio.scan_content(path)
            entry.update(peak=peak, rms=rms, finite=finite)
        return entry
    except BadAudio as e:
        return {"error": e.reason, "detail": e.detail[:200]}
    except Exception as e:  # noqa: BLE001 - a file must never take the run down
        return {"error": "unreadable", "detail": f"{type(e).__name__}: {e}"[:200]}


def index_cache_path(cache_dir: str, root: str) -> str:
    key = hashlib.sha1(
        os.path.abspath(root).encode() if not audio.is_remote(root) else root.encode()
    )
    name = os.path.basename(os.path.normpath(root)) or "root"
    return os.path.join(cache_dir, f"folder-{name}-{key.hexdigest()[:12]}.json")


def index_folder(
    root: str,
    cache_path: str | None = None,
    content_check: bool = True,
    workers: int = 8,
    write_cache: bool = True,
) -> tuple[dict, dict]:
    """Scan `root` recursively; returns ``(entries by relative path, timing/cache stats)``.

    Files whose size and mtime match the cache are not opened again.
    """
    t0 = time.perf_counter()
    cached: dict = {}
    if cache_path and os.path.exists(cache_path):
        try:
            with open(cache_path) as f:
                blob = json.load(f)
            if blob.get("version") == INDEX_VERSION and blob.get("content") == content_check:
                cached = blob["entries"]
        except (OSError, ValueError, KeyError):
            logging.warning("Ignoring unreadable data index cache %s", cache_path)
    entries: dict = {}
    todo: list[tuple[str, int, float]] = []
    listing = _list_files(root)
    for rel in listing:
        path = os.path.join(root, rel)
        ext = os.path.splitext(rel)[1].lower()
        name = os.path.basename(rel)
        if name.startswith(".") or (
            ext not in audio.AUDIO_EXTENSIONS and ext not in audio.UNSUPPORTED_EXTENSIONS
        ):
            entries[rel] = {"ignored": True}
            continue
        if ext in audio.UNSUPPORTED_EXTENSIONS:
            entries[rel] = {"error": f"unsupported format ({ext}; convert to flac or wav)"}
            continue
        try:
            size, mtime = _stat(path)
        except OSError as e:
            entries[rel] = {"error": "unreadable", "detail": str(e)[:200]}
            continue
        old = cached.get(rel)
        if old is not None and old.get("size") == size and old.get("mtime") == mtime:
            entries[rel] = old
        elif size == 0:
            entries[rel] = {"error": "empty file (0 bytes)", "size": 0, "mtime": mtime}
        else:
            todo.append((rel, size, mtime))
    reused = len(entries)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda t: _index_one(os.path.join(root, t[0]), content_check), todo)
        for (rel, size, mtime), entry in zip(todo, results):
            if not (entry.get("error") or "").startswith("unreadable"):
                entry.update(size=size, mtime=mtime)  # permission errors are retried next time
            entries[rel] = entry
    entries = {rel: entries[rel] for rel in listing}  # sorted order, whatever was cached
    if cache_path and write_cache:
        os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
        from jax_codec.inference.codec_io import atomic_output

        with atomic_output(cache_path) as tmp, open(tmp, "w") as f:
            json.dump(
                {
                    "version": INDEX_VERSION,
                    "root": root,
                    "content": content_check,
                    "entries": entries,
                },
                f,
            )
    stats = {
        "files": len(entries),
        "scanned": len(todo),
        "reused": reused,
        "seconds": time.perf_counter() - t0,
    }
    return entries, stats


class FolderClips(Clips):
    """`folder:PATH`: every decodable audio file under PATH, read lazily by window.

    Args:
      root: local path or any path `etils.epath` opens (``gs://bucket/dir``).
      sample_rate, channels: what `read` returns (soxr-resampled, mixed down or duplicated).
      cache_dir: where the index of files and durations is cached (None: no cache).
      content_check: decode every file once while indexing to find all-silent files and
        NaN/inf samples (cached, so only new or changed files are decoded again).
      silence_db: files whose peak is below this (dBFS) are skipped as all-silent.
    """

    def __init__(
        self,
        root: str,
        sample_rate: int,
        channels: int,
        cache_dir: str | None = None,
        content_check: bool = True,
        silence_db: float = -60.0,
        workers: int = 8,
        write_cache: bool = True,
        min_frames: int = 0,
    ):
        if not audio.is_remote(root) and not os.path.isdir(root):
            raise FileNotFoundError(
                f"data folder {root!r} does not exist or is not a directory "
                "(data.source=folder:PATH takes a directory of audio files)"
            )
        self.name = f"folder:{root}"
        self.root = root
        self.sample_rate = sample_rate
        self.channels = channels
        cache_path = index_cache_path(cache_dir, root) if cache_dir else None
        entries, self.index_stats = index_folder(
            root, cache_path, content_check, workers, write_cache
        )
        report = SkipReport(source=self.name)
        paths, infos, frames = [], [], []
        for rel, e in entries.items():
            if e.get("ignored"):
                report.ignored += 1
                continue
            if "error" in e:
                report.skip(e["error"], rel)
                continue
            if content_check and not e.get("finite", True):
                report.skip("NaN/inf samples", rel)
                continue
            if content_check and audio.db(e.get("peak", 1.0)) < silence_db:
                report.skip(f"all-silent (peak below {silence_db:g} dBFS)", rel)
                continue
            info = audio.AudioInfo(e["frames"], e["sr"], e["ch"])
            n = int(np.ceil(info.frames * sample_rate / info.sample_rate))
            if info.sample_rate != sample_rate:
                report.converted[f"resampled ({info.sample_rate} Hz -> {sample_rate} Hz)"] += 1
            if info.channels != channels:
                report.converted[f"channel-converted ({info.channels} -> {channels})"] += 1
            if n < min_frames:
                report.converted["shorter than a segment (zero-padded)"] += 1
            paths.append(rel)
            infos.append(info)
            frames.append(n)
        report.used = len(paths)
        report.seconds = float(sum(frames)) / sample_rate
        self.report = report
        self._paths = paths
        self._infos = infos
        self._frames = np.array(frames, np.int64)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self._paths[i])

    def frames(self, i: int) -> int:
        return int(self._frames[i])

    def all_frames(self) -> np.ndarray:
        return self._frames

    def read(self, i: int, start: int, length: int) -> np.ndarray:
        return audio.read_window(
            self.path(i), start, length, self.sample_rate, self.channels, self._infos[i]
        )
