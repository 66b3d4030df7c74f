"""`prepared:PATH`: audio decoded once into 16-bit PCM ArrayRecord shards, read by window.

A folder source decodes (and often resamples) compressed files while training; a prepared
folder stores the audio already at the model's rate and channel count, so a training window is
a record read and an int16 -> float conversion. Write one with

    python -m jax_codec.data.prepare --input=/data/flac --output=/data/prepared-44k-mono

and train with ``--config.data.source=prepared:/data/prepared-44k-mono``.

Layout of a prepared folder (format ``jax_codec.prepared``, version 1):

* ``data-00000-of-000NN.array_record``: ArrayRecord shards (``group_size:1``, uncompressed, for
  random access), about `shard_seconds` of audio each. Every record is one chunk of at most
  `chunk_seconds` of one source file: its raw samples as little-endian int16, frames x channels
  in C order (channels interleaved: ``L0 R0 L1 R1 ...``). No pickle, no header: the manifest
  says what each record is.
* ``manifest.json``: format and version, ``sample_rate``, ``channels``, ``dtype`` and ``scale``,
  ``clips`` (per source file: its path relative to the input folder, its total frames, its
  original rate and channels, how many samples were clipped), ``shards`` (per shard: its file
  name and its records in order, each ``[clip id, start frame within the clip, frames]``), the
  total ``frames`` and ``seconds``, and ``report``: the skip report of the scan (what was
  skipped and why, what was converted).

Samples: a clip is decoded and converted exactly as the folder source reads it (soxr HQ
resampling to `sample_rate`, mono mixdown by averaging or duplication to stereo), in windows of
one chunk. Each float sample ``x`` is stored as ``clip(round(x * 32768), -32768, 32767)`` and
read back as ``int16 / 32768``. So 16-bit sources already at the target rate and channel count
are stored bit-exactly, levels are never normalized (gain is the augmentation's job), and only
samples at or beyond full scale (+1.0 itself, float sources with overs, a resampler's overshoot
of a clipped master) are clipped; each clip's count of clipped samples is in the manifest and
files with any are counted in the report.

The writer is deterministic (sorted file order, no timestamps: the same input gives
byte-identical shards and manifest) and atomic (it writes into ``OUTPUT.tmp-XXXX`` next to the
output and renames it into place at the end; a failure leaves no output folder). It holds one
file's int16 audio in memory per decoding worker (about 10 MB per minute of 44.1 kHz stereo).

The reader opens shards lazily (and drops them when pickled, for grain worker processes). A
clip is one source file, so a crop may span record (and shard) boundaries: `read` fetches the
records overlapping the window and concatenates them. Asked for another rate or channel count
than the folder holds, it converts each window (the same grid-aligned resampling as the folder
source, so a window equals those samples of the whole resampled clip up to the resampler's
edge effects), and says so in the report; preparing at the training rate avoids that work.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import math
import os
import shutil
import sys
import tempfile
import threading

import numpy as np

from jax_codec.data import audio
from jax_codec.data.audio import BadAudio
from jax_codec.data.sources import Clips, FolderClips, SkipReport

FORMAT = "jax_codec.prepared"
VERSION = 1
MANIFEST = "manifest.json"
SCALE = 32768.0  # int16 full scale: stored = round(x * SCALE), clipped; read = stored / SCALE
DTYPE = np.dtype("<i2")
WRITER_OPTIONS = "group_size:1,uncompressed"
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # random access
PREPARE_COMMAND = "python -m jax_codec.data.prepare --input=AUDIO_DIR --output=DIR"


def shard_name(k: int, n: int) -> str:
    return f"data-{k:05d}-of-{n:05d}.array_record"


def _array_record():
    try:
        from array_record.python import array_record_module
    except ImportError as e:
        raise ImportError(
            f"prepared data needs the array_record package (pip install array-record): {e}"
        ) from None
    return array_record_module


# --------------------------------------------------------------------------- writing


def quantize(x: np.ndarray) -> tuple[np.ndarray, int]:
    """float ``[T, C]`` -> (little-endian int16 ``[T, C]``, number of clipped samples)."""
    y = np.rint(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0) * SCALE)
    clipped = int(np.count_nonzero((y > 32767) | (y < -32768)))
    return np.clip(y, -32768, 32767).astype(DTYPE), clipped


def _decode_clip(clips: FolderClips, i: int, chunk: int) -> tuple[list[np.ndarray], int]:
    """Clip `i` as int16 chunks of at most `chunk` frames (read as the folder source reads)."""
    planned = clips.frames(i)
    chunks, clipped, start = [], 0, 0
    while start < planned:
        want = min(chunk, planned - start)
        x = clips.read(i, start, want)
        if x.shape[0] == 0:
            break
        q, c = quantize(x)
        chunks.append(np.ascontiguousarray(q))
        clipped += c
        start += x.shape[0]
        if x.shape[0] < want:
            break
    if not chunks:
        raise BadAudio("no audio frames (zero length)")
    return chunks, clipped


def _decoded(clips: FolderClips, chunk: int, workers: int):
    """Yields ``(i, (chunks, clipped) or BadAudio)`` in clip order, decoding ahead in threads
    (at most ``workers + 1`` files in memory)."""
    pool = concurrent.futures.ThreadPoolExecutor(max(1, workers))
    pending: collections.deque = collections.deque()
    todo = iter(range(len(clips)))
    try:
        for i in todo:
            pending.append((i, pool.submit(_decode_clip, clips, i, chunk)))
            if len(pending) > workers:
                break
        while pending:
            i, future = pending.popleft()
            try:
                result = future.result()
            except BadAudio as e:
                result = e
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode_clip, clips, nxt, chunk)))
            yield i, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _nonempty(path: str) -> bool:
    return os.path.lexists(path) and (not os.path.isdir(path) or bool(os.listdir(path)))


def _check_output(output_dir: str, overwrite: bool) -> None:
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"output {output_dir} exists and is not a directory")
    if _nonempty(output_dir) and not overwrite:
        raise FileExistsError(
            f"output {output_dir} already exists and is not empty; "
            "pass --overwrite (overwrite=True) to replace it"
        )


def _install(tmp: str, output_dir: str) -> None:
    """Rename `tmp` to `output_dir`, replacing an existing one (which `_check_output` allowed)."""
    if _nonempty(output_dir):
        old = tempfile.mkdtemp(
            prefix=os.path.basename(output_dir) + ".old-", dir=os.path.dirname(output_dir)
        )
        os.rename(output_dir, os.path.join(old, "old"))
        os.rename(tmp, output_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, output_dir)  # replaces an empty directory


def _manifest_text(manifest: dict) -> str:
    """JSON with one clip and one shard per line (readable, and compact for big datasets)."""
    parts = []
    for key, value in manifest.items():
        if key in ("clips", "shards") and value:
            body = ",\n".join("  " + json.dumps(v, separators=(",", ":")) for v in value)
            parts.append(f" {json.dumps(key)}: [\n{body}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write_prepared(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    sample_rate: int = 44100,
    channels: int = 1,
    chunk_seconds: float = 10.0,
    shard_seconds: float = 3600.0,
    overwrite: bool = False,
    workers: int | None = None,
    verbose: bool = False,
) -> dict:
    """Decode every usable audio file under `input_dir` into a prepared folder at `output_dir`.

    Files are found, checked and skipped exactly as by the `folder:` source (its index, content
    check included); files that fail while decoding are skipped too. Returns the manifest. With
    `verbose`, prints the skip summary and shows a progress bar over files.

    Raises FileNotFoundError (no input folder), FileExistsError (output exists, not empty,
    without `overwrite`) and ValueError (bad arguments, no usable audio).
    """
    input_dir, output_dir = os.fspath(input_dir), os.fspath(output_dir)
    if int(sample_rate) != sample_rate or sample_rate < audio.MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate={sample_rate}: need an integer >= {audio.MIN_SAMPLE_RATE}")
    if channels not in (1, 2):
        raise ValueError(f"channels={channels}: use 1 (mono mixdown) or 2 (stereo)")
    if not chunk_seconds > 0 or not shard_seconds > 0:
        raise ValueError("chunk_seconds and shard_seconds must be positive")
    sample_rate = int(sample_rate)
    workers = workers or min(8, os.cpu_count() or 1)
    if audio.is_remote(output_dir):
        raise ValueError(f"output {output_dir}: write to a local folder, then copy it")
    out = os.path.abspath(output_dir)
    if not audio.is_remote(input_dir):
        if not os.path.isdir(input_dir):
            raise FileNotFoundError(
                f"input folder {input_dir} does not exist or is not a directory"
            )
        src = os.path.abspath(input_dir)
        if out == src or out.startswith(src.rstrip(os.sep) + os.sep):
            raise ValueError(f"output {output_dir} must not be inside the input folder {input_dir}")
    _check_output(out, overwrite)
    writer_module = _array_record()

    clips = FolderClips(input_dir, sample_rate, channels, cache_dir=None, workers=workers)
    report = clips.report
    if verbose:
        print(report.summary(), flush=True)
    if not len(clips):
        raise ValueError(
            f"no usable audio files under {input_dir} ({report.num_skipped} skipped, "
            f"{report.ignored} non-audio files)"
        )

    chunk = max(1, int(round(chunk_seconds * sample_rate)))
    shard_frames = max(1, int(round(shard_seconds * sample_rate)))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + ".tmp-", dir=os.path.dirname(out))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the data from other users
        manifest_clips: list[dict] = []
        shards: list[dict] = []
        writer = None
        failed = 0
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(clips), unit="file", desc="preparing", file=sys.stderr)
        decoded = _decoded(clips, chunk, workers)
        try:
            for i, result in decoded:
                if bar is not None:
                    bar.update(1)
                rel = clips._paths[i]
                if isinstance(result, BadAudio):
                    report.skip(result.reason, rel)
                    failed += 1
                    continue
                chunks, clipped = result
                clip_id, start = len(manifest_clips), 0
                for q in chunks:
                    n = q.shape[0]
                    if writer is None or (
                        shards[-1]["frames"] and shards[-1]["frames"] + n > shard_frames
                    ):
                        if writer is not None:
                            writer.close()
                        name = f"data-{len(shards):05d}.array_record"
                        writer = writer_module.ArrayRecordWriter(
                            os.path.join(tmp, name), WRITER_OPTIONS
                        )
                        shards.append({"file": name, "frames": 0, "records": []})
                    writer.write(q.tobytes())
                    shards[-1]["records"].append([clip_id, start, n])
                    shards[-1]["frames"] += n
                    start += n
                info = clips._infos[i]
                manifest_clips.append(
                    {
                        "path": rel,
                        "frames": start,
                        "source_sample_rate": info.sample_rate,
                        "source_channels": info.channels,
                        "clipped_samples": clipped,
                    }
                )
                if clipped:
                    report.converted["clipped (samples beyond 16-bit full scale)"] += 1
        finally:
            decoded.close()
            if writer is not None:
                writer.close()
            if bar is not None:
                bar.close()
        if not manifest_clips:
            raise ValueError(f"no audio files under {input_dir} could be decoded")
        for k, shard in enumerate(shards):
            final = shard_name(k, len(shards))
            os.rename(os.path.join(tmp, shard["file"]), os.path.join(tmp, final))
            shard["file"] = final
        total = sum(c["frames"] for c in manifest_clips)
        report.used = len(manifest_clips)
        report.seconds = total / sample_rate
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "sample_rate": sample_rate,
            "channels": channels,
            "dtype": "int16",
            "byte_order": "little",
            "layout": "frames x channels, interleaved",
            "scale": SCALE,
            "chunk_frames": chunk,
            "input": input_dir,
            "frames": total,
            "seconds": total / sample_rate,
            "clips": manifest_clips,
            "shards": shards,
            "report": report.to_dict(),
        }
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            f.write(_manifest_text(manifest))
        if verbose and failed:
            print(f"{failed} more files failed while decoding and were skipped:", flush=True)
            print(report.summary(), flush=True)
        _check_output(out, overwrite)  # nobody wrote there meanwhile
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


# --------------------------------------------------------------------------- reading


def read_manifest(path: str) -> dict:
    """The manifest of the prepared folder `path` (local or `etils.epath`), validated."""
    from etils import epath

    root = epath.Path(path)
    how = f"write one with: {PREPARE_COMMAND.replace('=DIR', f'={path}')}"
    if not root.is_dir():
        raise FileNotFoundError(f"prepared data folder {path} does not exist; {how}")
    file = root / MANIFEST
    if not file.exists():
        raise ValueError(f"{path} is not a prepared data folder (no {MANIFEST}); {how}")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"unreadable {MANIFEST} in {path} ({e}); prepare it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}/{MANIFEST} is not a {FORMAT} manifest; {how}")
    version = manifest.get("version")
    if version != VERSION:
        raise ValueError(
            f"{path} holds prepared data format version {version}; this code reads version "
            f"{VERSION}: prepare it again with this version ({PREPARE_COMMAND})"
        )
    if manifest.get("dtype") != "int16" or int(manifest.get("channels", 0)) not in (1, 2):
        raise ValueError(f"{path}/{MANIFEST}: unsupported dtype or channel count")
    return manifest


class PreparedClips(Clips):
    """A prepared folder (see the module docstring) as a `Clips` source: a clip is a file.

    Args:
      path: the prepared folder (local, or a path `etils.epath` opens whose shards ArrayRecord
        can read).
      sample_rate, channels: what `read` returns; windows are resampled / channel-converted
        when the folder holds another rate or channel count.
    """

    def __init__(self, path: str, sample_rate: int, channels: int):
        from etils import epath

        path = os.fspath(path)
        manifest = read_manifest(path)
        self.name = f"prepared:{path}"
        self.root = path
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.stored_rate = int(manifest["sample_rate"])
        self.stored_channels = int(manifest["channels"])
        root = epath.Path(path)
        self._shard_paths = []
        for shard in manifest["shards"]:
            p = root / shard["file"]
            if not p.exists():
                raise FileNotFoundError(
                    f"prepared data folder {path} is incomplete: {shard['file']} is missing "
                    "(prepare it again)"
                )
            self._shard_paths.append(os.fspath(p))
        clips = manifest["clips"]
        recs: list[list[tuple[int, int, int, int]]] = [[] for _ in clips]
        for s, shard in enumerate(manifest["shards"]):
            for index, (clip, start, frames) in enumerate(shard["records"]):
                recs[clip].append((start, frames, s, index))
        self._records = []  # per clip: int64 [n, 4] = (start, frames, shard, index), by start
        for c, r in zip(clips, recs):
            r = np.array(sorted(r), np.int64).reshape(-1, 4)
            ends = r[:, 0] + r[:, 1]
            if (
                len(r) == 0
                or r[0, 0] != 0
                or (r[1:, 0] != ends[:-1]).any()
                or ends[-1] != c["frames"]
            ):
                raise ValueError(f"{path}/{MANIFEST}: records of {c['path']} do not tile the clip")
            self._records.append(r)
        self._src_frames = np.array([c["frames"] for c in clips], np.int64)
        self._paths = [c["path"] for c in clips]
        # Same length convention as the folder source: ceil at the requested rate.
        self._frames = -(-self._src_frames * self.sample_rate // self.stored_rate)

        report = SkipReport(source=self.name)
        old = manifest.get("report", {})
        for reason, paths in old.get("skipped", {}).items():
            report.skipped[reason].extend(paths)
        report.converted.update(old.get("converted", {}))
        report.ignored = int(old.get("ignored", 0))
        if self.stored_rate != self.sample_rate:
            report.converted[
                f"resampled while reading ({self.stored_rate} Hz -> {self.sample_rate} Hz; "
                "prepare at the training rate to save this work)"
            ] += len(clips)
        if self.stored_channels != self.channels:
            report.converted[
                f"channel-converted while reading ({self.stored_channels} -> {self.channels})"
            ] += len(clips)
        report.used = len(clips)
        report.seconds = float(self._frames.sum()) / self.sample_rate
        self.report = report
        self._readers: dict = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._paths)

    def source_path(self, i: int) -> str:
        """Clip `i`'s source file, relative to the folder it was prepared from."""
        return self._paths[i]

    def frames(self, i: int) -> int:
        return int(self._frames[i])

    def all_frames(self) -> np.ndarray:
        return self._frames

    def _reader(self, s: int):
        reader = self._readers.get(s)
        if reader is None:
            with self._lock:
                reader = self._readers.get(s)
                if reader is None:
                    module = _array_record()
                    reader = module.ArrayRecordReader(
                        self._shard_paths[s], READER_OPTIONS, file_reader_buffer_size=32768
                    )
                    self._readers[s] = reader
        return reader

    def read_stored(self, i: int, start: int, length: int) -> np.ndarray:
        """Frames ``[start, start + length)`` of clip `i` as stored: float32 ``[n, stored ch]``."""
        ch = self.stored_channels
        end = min(start + length, int(self._src_frames[i]))
        start = max(0, start)
        if end <= start:
            return np.zeros((0, ch), np.float32)
        r = self._records[i]
        j0 = int(np.searchsorted(r[:, 0], start, side="right")) - 1
        j1 = int(np.searchsorted(r[:, 0], end, side="left"))
        parts = []
        try:
            j = j0
            while j < j1:  # one read per shard
                s = int(r[j, 2])
                k = j
                while k < j1 and r[k, 2] == s:
                    k += 1
                data = self._reader(s).read([int(x) for x in r[j:k, 3]])
                for (_, frames, _, _), blob in zip(r[j:k], data):
                    if len(blob) != frames * ch * DTYPE.itemsize:
                        raise BadAudio(
                            "corrupt (prepared record has the wrong size)",
                            f"{self.name} clip {i}: prepare it again",
                        )
                    parts.append(np.frombuffer(blob, DTYPE).reshape(frames, ch))
                j = k
        except BadAudio:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged shard is a bad clip, not a crash
            raise BadAudio("unreadable (prepared shard)", f"{type(e).__name__}: {e}") from None
        x = parts[0] if len(parts) == 1 else np.concatenate(parts)
        lo = start - int(r[j0, 0])
        return x[lo : lo + end - start].astype(np.float32) / np.float32(SCALE)

    def read(self, i: int, start: int, length: int) -> np.ndarray:
        rate, sr = self.stored_rate, self.sample_rate
        if rate == sr:
            return audio.convert_channels(self.read_stored(i, start, length), self.channels)
        # As `audio.read_window`: start the stored span on a sample of the output grid, a
        # margin early, so the window equals those samples of the whole resampled clip.
        total = int(self._src_frames[i])
        g = math.gcd(rate, sr)
        step_in, step_out = rate // g, sr // g
        margin = audio._RESAMPLE_MARGIN
        blocks = max(0, start - margin) // step_out
        lo, lo_out = blocks * step_in, blocks * step_out
        end_out = min(start + length, total * sr // rate)
        if end_out <= start:
            return np.zeros((0, self.channels), np.float32)
        n_src = -(-(end_out + margin - lo_out) * rate // sr)
        x = self.read_stored(i, lo, n_src)
        if self.channels < x.shape[1]:
            x = audio.convert_channels(x, self.channels)  # mix down before resampling: cheaper
        y = audio.resample(x, rate, sr)[start - lo_out : end_out - lo_out]
        return audio.convert_channels(y, self.channels)
