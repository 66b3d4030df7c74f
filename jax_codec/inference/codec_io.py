"""Audio <-> `.jcodec`, written once for `compress`/`decompress`, the evaluation and the demo.

    enc = encode_to_jcodec(loaded, audio, "x.jcodec", n_quantizers=4)  # [C, T] at the model rate
    header = open_jcodec("x.jcodec", loaded)                           # checked against the model
    audio = np.concatenate(list(decode_jcodec("x.jcodec", loaded)), axis=1)

`encode_to_jcodec` also takes blocks ``[C, n]`` (a long file read piece by piece): it encodes
them window by window with `chunked.iter_encode` (exactly `chunked_encode` of the whole
signal) and writes one chunk per window, so memory does not grow with the length of the input.
`decode_jcodec` streams back the same way. Every output file appears only complete
(`atomic_output`). `iter_input` reads and resamples an audio file in blocks, `AudioOut` writes
one, `resample_blocks` resamples a stream of blocks.

Channels (docs/stereo.md): a mono model codes each channel of the audio as its own code stream
(one batch row each; dual mono for a stereo file). A joint-stereo model (`codec.channels == 2`)
codes the audio as ONE stream, ``[1, n, 2]``: a stereo file as it is, a mono file duplicated
(`jax_codec.stereo.match_channels`); the header says so (`channel_mode`) and keeps the file's
channel count, so decoding gives back what went in: stereo as decoded, mono as the mean of the
decoded left and right. Audio and codes here are ``[C, ...]`` for the channels of the audio and
``[S, ...]`` for the code streams (S = C, or 1 for joint stereo).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from jax_codec.bitstream import BitstreamError, resampled_length
from jax_codec.cli_errors import CliError
from jax_codec.stereo import match_channels

READ_BLOCK = 1 << 16  # input frames decoded per read
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


# --------------------------------------------------------------------------- atomic outputs


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path in `path`'s folder; renames it over `path` when the block ends,
    or removes it if the block raises. The file gets the permissions a new file would get."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(base)[1], dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def parent_folders(path: str | os.PathLike) -> Iterator[None]:
    """Creates the missing folders above `path` for a block that writes it; if the block
    raises, removes the ones it created that are still empty, so a failed write leaves no
    folder behind (the file itself is `atomic_output`'s job)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    missing = []  # deepest first
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for folder in reversed(missing):
        os.mkdir(folder)
    try:
        yield
    except BaseException:
        for folder in missing:
            try:
                os.rmdir(folder)
            except OSError:  # not empty: something else was written there meanwhile
                break
        raise


# --------------------------------------------------------------------------- audio in and out


def iter_input(path: str, info, channels: int, rate: int, block: int = READ_BLOCK):
    """Float32 blocks ``[channels, n]`` of `path` at `rate`: exactly
    ``resampled_length(info.frames, info.sample_rate, rate)`` samples per channel, read and
    resampled in blocks (bounded memory)."""
    import soundfile as sf
    import soxr

    from jax_codec.data import audio

    frames, rate_in = info.frames, info.sample_rate
    target = resampled_length(frames, rate_in, rate)
    rs = None if rate_in == rate else soxr.ResampleStream(rate_in, rate, channels, "float32", "HQ")
    read = emitted = 0
    try:
        with sf.SoundFile(path) as f:
            while read < frames:
                try:
                    x = f.read(min(block, frames - read), dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError) as e:
                    raise CliError(f"{path}: decoding failed after {read} frames ({e})") from None
                if x.shape[0] == 0:
                    raise CliError(
                        f"{path}: the audio ends after {read} of the {frames} frames its header "
                        "announces (truncated or corrupt file)"
                    )
                if not np.isfinite(x).all():
                    raise CliError(f"{path}: NaN or infinite samples near frame {read}")
                read += x.shape[0]
                x = audio.convert_channels(x, channels)
                y = x if rs is None else rs.resample_chunk(x, last=read >= frames)
                y = y[: target - emitted]
                emitted += y.shape[0]
                if y.shape[0]:
                    yield np.ascontiguousarray(y.T, dtype=np.float32)
    except sf.LibsndfileError as e:
        raise CliError(f"{path}: cannot read audio ({e})") from None
    if emitted < target:  # the resampler's rounding: at most a sample or so
        yield np.zeros((channels, target - emitted), np.float32)


def check_subtype(path: str, subtype: str | None) -> str:
    """The soundfile format of the output `path` (by its extension); raises `CliError` when
    `subtype` (e.g. PCM_24) is not available for it."""
    import soundfile as sf

    fmt = OUTPUT_FORMATS[os.path.splitext(path)[1].lower()]
    if subtype is not None and not sf.check_format(fmt, subtype):
        raise CliError(f"subtype {subtype} is not available for {fmt} files")
    return fmt


class AudioOut:
    """Writes audio blocks to `path` (.wav, .flac or .ogg); it appears only on a clean exit."""

    def __init__(self, path: str, sample_rate: int, channels: int, subtype: str | None = None):
        import soundfile as sf

        fmt = check_subtype(path, subtype)
        self.frames = 0
        self._atomic = atomic_output(path)
        tmp = self._atomic.__enter__()
        try:
            self.f = sf.SoundFile(
                tmp, "w", samplerate=sample_rate, channels=channels, format=fmt, subtype=subtype
            )
        except BaseException as e:
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise

    def write(self, block: np.ndarray) -> None:
        """`block` ``[channels, n]``; clipped to [-1, 1]."""
        if block.shape[1]:
            self.f.write(np.clip(block.T, -1.0, 1.0))
            self.frames += block.shape[1]

    def __enter__(self) -> AudioOut:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.f.close()
        except Exception:
            if exc_type is None:
                raise
        self._atomic.__exit__(exc_type, exc, tb)


def write_audio(path: str, audio: np.ndarray, sample_rate: int, subtype: str | None = None):
    """Writes ``[channels, T]`` to `path` (.wav, .flac or .ogg), clipped, atomically."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise CliError(f"{path}: output must be .wav, .flac or .ogg")
    with AudioOut(path, sample_rate, audio.shape[0], subtype) as out:
        out.write(np.asarray(audio, np.float32))


def resample_blocks(blocks, channels: int, rate_in: int, rate_out: int, length: int):
    """Streams ``[channels, n]`` blocks from `rate_in` to `rate_out`; exactly `length` samples."""
    import soxr

    rs = (
        None
        if rate_in == rate_out
        else soxr.ResampleStream(rate_in, rate_out, channels, "float32", "HQ")
    )
    emitted = 0
    for y in blocks:
        if rs is not None:
            y = rs.resample_chunk(np.ascontiguousarray(y.T, np.float32)).T
        y = y[:, : length - emitted]
        emitted += y.shape[1]
        yield y
    if rs is not None:
        y = rs.resample_chunk(np.zeros((0, channels), np.float32), last=True).T[
            :, : length - emitted
        ]
        emitted += y.shape[1]
        yield y
    if emitted < length:
        yield np.zeros((channels, length - emitted), np.float32)


# --------------------------------------------------------------------------- settings


def is_joint(codec) -> bool:
    """True for a joint-stereo model: one code stream for both channels."""
    return getattr(codec, "channels", 1) == 2


def rate_unit(codec) -> str:
    """What `codec.bitrate_kbps` counts, for messages: per channel, or the stereo pair."""
    return "kbps for the stereo pair (one joint stream)" if is_joint(codec) else "kbps per channel"


def code_streams(codec, channels: int) -> int:
    """Code streams a file of `channels` channels takes: one per channel, or one joint."""
    return 1 if is_joint(codec) else channels


def check_channels(codec, channels: int) -> None:
    """Raises `CliError` unless a model like `codec` can code audio of `channels` channels:
    any count for a mono model (a stream each), 1 or 2 for a joint-stereo model."""
    if channels < 1:
        raise CliError(f"audio with {channels} channels: there is nothing to code")
    if is_joint(codec) and channels > 2:
        raise CliError(
            f"audio with {channels} channels: a joint-stereo model codes mono or stereo audio; "
            "mix it down to stereo first (jax_codec.stereo.match_channels(audio, 2), or "
            "ffmpeg -ac 2)"
        )


def select_quantizers(codec, kbps: float | None, n_quantizers: int | None) -> int:
    """The `n_quantizers` given, or the most whose bitrate fits `kbps`: the model's code rate
    (`codec.bitrate_kbps`), per channel for a mono model, for the pair for a joint-stereo one."""
    nq = codec.num_quantizers
    rates = [codec.bitrate_kbps(k) for k in range(1, nq + 1)]
    listing = ", ".join(f"{r:.3f} ({k} quantizer{'s' * (k > 1)})" for k, r in enumerate(rates, 1))
    if n_quantizers is not None:
        if not 1 <= n_quantizers <= nq:
            raise CliError(f"--n_quantizers must be in 1..{nq}, got {n_quantizers}")
        return n_quantizers
    if kbps is None:
        return nq
    if not math.isfinite(kbps) or kbps <= 0:
        raise CliError(f"--kbps must be a positive number, got {kbps}")
    fits = [k for k, r in enumerate(rates, 1) if r <= kbps * (1 + 1e-9)]
    if not fits:
        raise CliError(
            f"--kbps {kbps:g} is below this model's lowest bitrate; {rate_unit(codec)}: {listing}"
        )
    return max(fits)


def check_window(codec, window_frames: int | None, total_frames: int | None = None) -> int:
    """The core frames of a processing window (`chunked.window_core_frames`), checked."""
    from jax_codec.inference import chunked

    if window_frames is not None and not 1 <= window_frames <= 1 << 20:
        raise CliError(f"--window_frames must be in 1..{1 << 20}, got {window_frames}")
    return chunked.window_core_frames(codec, window_frames, total_frames)


def priors_command(loaded) -> str:
    """The command that makes priors for `loaded`, for messages."""
    where = f"--checkpoint {loaded.checkpoint}" if loaded.checkpoint else "--checkpoint DIR"
    return f"python -m jax_codec priors {where}"


# --------------------------------------------------------------------------- .jcodec


def packed_file_size(header) -> int:
    """Bytes the file takes bit packed (mode 0): header, chunks with their framing, end marker."""
    chunks = sum(
        24 + header.packed_payload_size(header.chunk_frames_at(i)) for i in range(header.num_chunks)
    )
    return header.header_size + chunks + 20


def file_header(
    loaded,
    channels: int,
    num_samples: int,
    n_quantizers: int,
    window_frames: int | None = None,
    original_sample_rate: int | None = None,
    original_num_samples: int | None = None,
):
    """(the `.jcodec` header of `channels` x `num_samples` at the model's rate, exact): one
    chunk per window of `chunked.window_plan`, whose `exact` flag it passes on; joint stereo
    for a joint-stereo model."""
    from jax_codec import bitstream
    from jax_codec.inference import chunked

    codec = loaded.codec
    check_channels(codec, channels)
    mode = bitstream.CHANNELS_JOINT if is_joint(codec) else bitstream.CHANNELS_INDEPENDENT
    total = chunked.encoded_frames(codec, num_samples)
    core, _, exact = chunked.window_plan(codec, total, window_frames)
    header = bitstream.Header(
        sample_rate=codec.sample_rate,
        channels=channels,
        num_samples=num_samples,
        num_frames=total,
        hop_length=codec.hop_length,
        strides=codec.vq_strides,
        codebook_sizes=codec.codebook_size,
        n_quantizers=n_quantizers,
        chunk_frames=core,
        model_id=loaded.name,
        model_hash=loaded.fingerprint,
        original_sample_rate=original_sample_rate,
        original_num_samples=original_num_samples,
        frame_rate=codec.frame_rate,
        channel_mode=mode,
    )
    return header, exact


@dataclasses.dataclass
class Encoded:
    """What `encode_to_jcodec` wrote."""

    path: str
    header: object  # the `bitstream.Header` written (entropy mode and priors hash filled in)
    size_bytes: int
    exact: bool  # False only for an LSTM model windowed over a long input (`window_plan`)


def encode_to_jcodec(
    loaded,
    audio: np.ndarray | Iterable[np.ndarray],
    path: str,
    n_quantizers: int,
    *,
    channels: int | None = None,
    num_samples: int | None = None,
    window_frames: int | None = None,
    original_sample_rate: int | None = None,
    original_num_samples: int | None = None,
    codes: Sequence[np.ndarray] | None = None,
    on_chunk: Callable[[float], None] | None = None,
    level=None,
    match_loudness: bool = True,
) -> Encoded:
    """Encodes audio at the model's rate into a `.jcodec` file at `path` (atomic).

    `audio` is ``[C, T]``, or an iterable of blocks ``[C, n]`` with `channels` and
    `num_samples` given. The codes are `chunked.iter_encode`'s, one chunk per window, range
    coded with `loaded.priors` when it has them: each channel a stream for a mono model, one
    joint stream ``[1, n, 2]`` for a joint-stereo model (mono duplicated). `codes` (levels
    ``[S, F / s_i]`` of the whole signal, S streams, computed elsewhere from the same audio)
    are written instead of encoding (with `level` given, codes of the audio scaled by
    `input_gain_db`, as this function scales it). `on_chunk` gets the seconds of audio each
    chunk covers.

    Levels (`jax_codec.levels`): a model trained with `data.normalize` gets its input scaled
    to `data.normalize_db`, as its training crops were, and the header's `gain_db` undoes
    that. With `match_loudness` the file is then decoded once more and `gain_db` corrected so
    that the decoded loudness (BS.1770, at the original rate, as `decompress` writes it; the
    plain level when `level` was made without ``loudness=True``) equals the input's (DAC's
    decompressor does the same to its output; here the encoder does it, so decoding stays one
    streaming pass); at most
    `MAX_LOUDNESS_CORRECTION_DB` either way, and none for a silent decode. Block input needs
    `level`, a `levels.LevelMeter` fed the same blocks (a first pass over the input); given
    `codes` and no `level`, nothing is normalized.
    """
    from jax_codec import bitstream, levels
    from jax_codec.inference import chunked

    codec = loaded.codec
    if isinstance(audio, np.ndarray):
        channels, num_samples = audio.shape
        if level is None and codes is None:
            level = levels.LevelMeter(codec.sample_rate, loudness=match_loudness)
            level.add(audio)
        audio = [audio]
    header, exact = file_header(
        loaded, channels, num_samples, n_quantizers, window_frames,
        original_sample_rate, original_num_samples,
    )  # fmt: skip
    target = levels.target_db(loaded.config) if codes is None or level is not None else None
    if target is not None:
        if level is None:
            raise ValueError(
                "block input to a level-normalizing model needs level= (a levels.LevelMeter "
                "fed the same blocks)"
            )
        gain_in = input_gain_db(loaded, level)
        scale = np.float32(levels.db_to_gain(gain_in))
        audio = (np.asarray(b, np.float32) * scale for b in audio)
        header = dataclasses.replace(header, gain_db=-gain_in)
    streams = header.streams
    if codes is None:
        if header.joint:  # [C, n] -> one row [1, n, 2] (iter_encode duplicates mono)
            audio = (np.asarray(b).T[None] for b in audio)
        windows = chunked.iter_encode(
            codec, loaded.params, audio, num_samples, n_quantizers, window_frames
        )
        chunks = ([tuple(c[s] for c in w) for s in range(streams)] for w in windows)
    else:
        if any(np.shape(c)[0] != streams for c in codes):
            raise ValueError(
                f"codes for {np.shape(codes[0])[0]} stream(s); this {header.channel_mode_name} "
                f"file takes {streams}"
            )
        per_stream = [tuple(c[s] for c in codes) for s in range(streams)]
        chunks = bitstream.split_chunks(per_stream, header)
    seconds_per_frame = codec.hop_length / codec.sample_rate
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f, bitstream.Writer(f, header, priors=loaded.priors) as w:
            for i, chunk in enumerate(chunks):
                w.write_chunk(chunk)
                if on_chunk is not None:
                    on_chunk(header.chunk_frames_at(i) * seconds_per_frame)
        written = w.header
        if target is not None and match_loudness:
            # measured as decompress writes it: at the original rate when there is one
            rate = written.original_sample_rate
            weighted = level.weighted is not None  # BS.1770 loudness, else the plain level
            out = levels.LevelMeter(rate, loudness=weighted)
            decoded = decode_jcodec(tmp, loaded, window_frames)
            if rate != written.sample_rate:
                decoded = resample_blocks(
                    decoded, channels, written.sample_rate, rate, written.original_num_samples
                )
            for y in decoded:
                out.add(y)
            got = out.loudness_db() if weighted else out.level_db()
            if got > levels.SILENCE_DB:
                want = level.loudness_db() if weighted else level.level_db()
                fix = float(
                    np.clip(
                        want - got,
                        -MAX_LOUDNESS_CORRECTION_DB,
                        MAX_LOUDNESS_CORRECTION_DB,
                    )
                )
                written = dataclasses.replace(written, gain_db=written.gain_db + fix)
                with open(tmp, "r+b") as f:  # same size: only the gain (and the CRC) change
                    f.write(written.to_bytes())
    return Encoded(path, written, os.path.getsize(path), exact)


MAX_LOUDNESS_CORRECTION_DB = 20.0


def input_gain_db(loaded, level) -> float:
    """The gain in dB that brings the audio `level` (a `levels.LevelMeter`) measured to the
    level `loaded`'s model was trained at (0 for a model that does not normalize)."""
    from jax_codec import levels

    target = levels.target_db(loaded.config)
    if target is None:
        return 0.0
    return levels.normalizing_gain(level.level_db(), level.peak, target)


def check_architecture(header, codec) -> None:
    """Raises `BitstreamError` unless `header` was written by a model shaped like `codec`
    (joint-stereo files by a joint-stereo model, others by a mono one)."""
    want = (
        codec.sample_rate,
        codec.hop_length,
        tuple(codec.vq_strides),
        (codec.codebook_size,) * codec.num_quantizers,
    )
    got = (header.sample_rate, header.hop_length, header.strides, header.codebook_sizes)
    if got != want:
        raise BitstreamError(
            "the file's header does not match the model's architecture (sample rate, hop, "
            f"strides, codebooks): {got} vs {want}"
        )
    if header.joint != is_joint(codec):
        kind = "joint-stereo" if is_joint(codec) else "mono"
        raise BitstreamError(
            f"the file is {header.channel_mode_name} ({header.streams} code stream(s) for "
            f"{header.channels} channel(s)) but the loaded model is {kind}; pass --checkpoint "
            "of the model that made it"
        )


def open_jcodec(path: str, loaded):
    """The header of the `.jcodec` at `path`, checked against `loaded`: the model that wrote it
    (`BitstreamError`), and priors for an entropy-coded file (`CliError`)."""
    from jax_codec import bitstream

    with bitstream.Reader(path) as r:
        header = r.header
    bitstream.check_model(header, loaded.name, loaded.fingerprint)
    check_architecture(header, loaded.codec)
    if header.entropy_mode and loaded.priors is None:
        raise CliError(
            f"{path} is entropy coded and needs the priors it was made with (sha256 "
            f"{header.priors_sha256.hex()[:16]}…): none found; pass --priors FILE, or make "
            f"them with `{priors_command(loaded)}`"
        )
    return header


def frame_blocks(reader) -> Iterator[np.ndarray]:
    """Frame-rate codes ``[S, F, k]`` (S code streams) of each chunk of an open
    `bitstream.Reader`."""
    h = reader.header
    for i, chunk in enumerate(reader):
        frames = h.chunk_frames_at(i)
        yield np.stack(
            [
                np.stack(
                    [np.repeat(a, s)[:frames] for a, s in zip(levels, h.stored_strides)], axis=-1
                )
                for levels in chunk
            ]
        ).astype(np.int32)


def read_jcodec(path: str, loaded) -> tuple[object, tuple[np.ndarray, ...]]:
    """(header, codes per stored level ``[S, F / s_i]``, S = `header.streams`) of a `.jcodec`,
    checked as by `open_jcodec`."""
    from jax_codec import bitstream

    open_jcodec(path, loaded)
    with bitstream.Reader(path, priors=loaded.priors) as r:
        header = r.header
        stored = r.read_all()
    k = header.n_quantizers
    return header, tuple(np.stack([levels[i] for levels in stored]) for i in range(k))


def file_channels(decoded: np.ndarray, channels: int) -> np.ndarray:
    """A decoded block -> ``[channels, n]``: mono-model rows ``[C, n]`` as they are; a
    joint-stereo row ``[1, n, 2]`` as left and right, or their mean for a mono file."""
    if decoded.ndim == 2:
        return decoded
    return np.ascontiguousarray(match_channels(decoded[0], channels).T)


def decode_jcodec(path: str, loaded, window_frames: int | None = None) -> Iterator[np.ndarray]:
    """Audio blocks ``[C, n]`` of the `.jcodec` at `path`, at the model's rate: exactly the
    header's `num_samples` for each of its `channels`, decoded window by window
    (`chunked.iter_decode`; a joint-stereo stream gives left and right, mixed down for a
    mono file), times the header's gain."""
    from jax_codec import bitstream
    from jax_codec.inference import chunked

    header = open_jcodec(path, loaded)
    gain = np.float32(header.gain)
    with bitstream.Reader(path, priors=loaded.priors) as r:
        for y in chunked.iter_decode(
            loaded.codec,
            loaded.params,
            frame_blocks(r),
            header.num_frames,
            header.num_samples,
            window_frames,
        ):
            y = file_channels(y, header.channels)
            yield y * gain if header.gain_db else y
