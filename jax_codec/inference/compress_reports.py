"""What `compress`, `decompress` and `info` report: the report dicts and their text.

Each command prints one dict, as one JSON object with `--json` or as the lines its `format_*`
function writes: `compress_report` / `format_compress` for a compressed file (sizes, rates,
channel mode, header gain), `decompress_report` / `format_decompress` for a decoded one, and
`file_info` / `format_info` for `info FILE.jcodec` (the header, every chunk CRC checked, no
decoding). `compress_many` builds its summary from the per-file reports.
`jax_codec.inference.compress` re-exports the names here.
"""

from __future__ import annotations

from jax_codec.inference import codec_io
from jax_codec.inference.api import LoadedCodec

# --------------------------------------------------------------------------- compress


def compress_report(
    input_path: str, info, loaded: LoadedCodec, level, enc: codec_io.Encoded, seconds: float
) -> dict:
    """The report of one compressed file (`enc`, from `input_path` with `info`) that took
    `seconds` of wall time."""
    from jax_codec import bitstream

    header = enc.header
    duration = info.frames / info.sample_rate
    size = bitstream.info(enc.path)["file_size_bytes"]
    packed = codec_io.packed_file_size(header)
    entropy_coded = loaded.priors is not None
    return {
        "input": input_path,
        "output": enc.path,
        "duration_s": duration,
        "sample_rate": info.sample_rate,
        "input_channels": info.channels,
        "channels": header.channels,
        "channel_mode": header.channel_mode_name,
        "code_streams": header.streams,
        "model": loaded.name,
        "model_sample_rate": loaded.codec.sample_rate,
        "n_quantizers": header.n_quantizers,
        "input_level_db": None if level is None else level.level_db(),
        "gain_db": header.gain_db,
        "size_bytes": size,
        "actual_kbps": size * 8 / duration / 1e3,
        "nominal_kbps": header.nominal_kbps,
        "nominal_kbps_per_stream": header.nominal_kbps_per_stream,
        "nominal_kbps_per_channel": header.nominal_kbps_per_channel,
        "entropy_coded": entropy_coded,
        "priors": loaded.priors_path if entropy_coded else None,
        "packed_size_bytes": packed,
        "entropy_gain": 1.0 - size / packed,
        # False only for an LSTM model (EnCodec) windowed over a long file: see
        # chunked.window_plan; the codes are then close to, not equal to, the whole-signal ones.
        "whole_signal_exact": enc.exact,
        "seconds": seconds,
        "x_realtime": duration / seconds if seconds > 0 else float("inf"),
    }


def format_compress(r: dict) -> str:
    ch = "mono" if r["channels"] == 1 else "stereo"
    mix = (
        f" (mixed down from {r['input_channels']})" if r["input_channels"] != r["channels"] else ""
    )
    joint = r.get("channel_mode") == "joint stereo"
    if joint:
        ch += (
            " in one joint-stereo code stream"
            if r["channels"] == 2
            else " (duplicated into a joint-stereo model's one code stream)"
        )
        nominal = f"{r['nominal_kbps']:.3f} kbps for the one stream"
    elif r.get("code_streams", r["channels"]) > 1:
        ch += ", dual mono (a code stream per channel)"
        nominal = (
            f"{r['nominal_kbps']:.3f} kbps = {r['channels']} x {r['nominal_kbps_per_stream']:.3f}"
        )
    else:
        nominal = f"{r['nominal_kbps']:.3f} kbps"
    if r["entropy_coded"]:
        gain = (
            f"range coded with {r['priors']}: {100 * r['entropy_gain']:.1f}% smaller than bit "
            f"packed ({r['packed_size_bytes']} bytes)"
        )
    else:
        gain = "bit packed (no priors used)"
    return "\n".join(
        [
            f"wrote {r['output']}: {r['duration_s']:.2f} s, {ch}{mix}, {r['n_quantizers']} "
            f"quantizers of model {r['model'] or '?'}",
            f"size {r['size_bytes']} bytes = {r['actual_kbps']:.3f} kbps (nominal {nominal})",
            f"{gain}; encoded at {r['x_realtime']:.1f}x real time",
        ]
        + (
            []
            if r.get("input_level_db") is None
            else [
                f"input level {r['input_level_db']:.1f} dBFS, normalized for the model; the "
                f"decoder applies {r['gain_db']:+.2f} dB"
            ]
        )
        + (
            []
            if r.get("whole_signal_exact", True)
            else [
                "note: this model has an LSTM and the file was encoded in overlapping windows "
                "(too long for one, or --window_frames given): codes are close to, not equal "
                "to, a whole-signal encode"
            ]
        )
    )


# --------------------------------------------------------------------------- decompress


def decompress_report(
    input_path: str,
    output_path: str,
    header,
    loaded: LoadedCodec,
    rate: int,
    length: int,
    seconds: float,
) -> dict:
    """The report of one decompressed file (`length` samples at `rate`) that took `seconds`."""
    duration = header.duration_seconds
    return {
        "input": input_path,
        "output": output_path,
        "duration_s": length / rate,
        "sample_rate": rate,
        "channels": header.channels,
        "channel_mode": header.channel_mode_name,
        "num_samples": length,
        "model": header.model_id,
        "n_quantizers": header.n_quantizers,
        "entropy_coded": bool(header.entropy_mode),
        "priors": loaded.priors_path if header.entropy_mode else None,
        "seconds": seconds,
        "x_realtime": duration / seconds if seconds > 0 else float("inf"),
    }


def format_decompress(r: dict) -> str:
    return (
        f"wrote {r['output']}: {r['duration_s']:.2f} s ({r['num_samples']} samples) at "
        f"{r['sample_rate']} Hz, {r['channels']} channel(s); decoded at {r['x_realtime']:.1f}x "
        "real time"
    )


# --------------------------------------------------------------------------- info


def file_info(path: str) -> dict:
    """`bitstream.info` of a `.jcodec` (every chunk CRC checked), with the original length."""
    from jax_codec import bitstream

    d = bitstream.info(path, verify=True)  # checks every chunk CRC too (no decoding)
    with bitstream.Reader(path) as r:
        h = r.header
    n = h.original_num_samples
    d.update(
        file=path,
        model=h.model_id,
        original_num_samples=n,
        original_duration_seconds=n / h.original_sample_rate,
    )
    return d


def format_info(d: dict) -> str:
    rows = [
        ("file", d["file"]),
        ("format version", d["format_version"]),
        ("model", f"{d['model'] or '?'} (hash {d['model_hash'][:16]}…)"),
        ("duration", f"{d['duration_seconds']:.3f} s"),
        (
            "audio",
            f"{d['channels']} channel(s), {d['original_num_samples']} samples at "
            f"{d['original_sample_rate']} Hz (coded at {d['sample_rate']} Hz: "
            f"{d['num_samples']} samples)",
        ),
        ("channel mode", _channel_mode_text(d)),
        ("decoder gain", f"{d.get('gain_db', 0.0):+.2f} dB"),
        (
            "codes",
            f"{d['n_quantizers']} of {len(d['strides'])} levels, strides {d['strides'][: d['n_quantizers']]}, "
            f"codebooks {d['codebook_sizes'][: d['n_quantizers']]}, {d['num_frames']} frames at "
            f"{d['frame_rate']:.3f} Hz, hop {d['hop_length']}",
        ),
        ("chunks", f"{d['num_chunks']} of {d['chunk_frames']} frames"),
        ("coding", d["entropy_coding"] + (f" (sha256 {d['priors_sha256'][:16]}…)" if d["priors_sha256"] else "")),
        ("size", f"{d['file_size_bytes']} bytes"),
        ("bitrate", f"{d['actual_kbps']:.3f} kbps actual, {d['nominal_kbps']:.3f} kbps nominal "
                    f"({d['code_streams']} x {d['nominal_kbps_per_stream']:.3f} per code stream)"),
    ]  # fmt: skip
    return "\n".join(f"{k:>15}: {v}" for k, v in rows)


def _channel_mode_text(d: dict) -> str:
    name, streams = d["channel_mode_name"], d["code_streams"]
    text = f"{name} ({streams} code stream{'s' * (streams > 1)})"
    if name == "joint stereo" and d["channels"] == 1:
        text += "; mono input duplicated, decoded as the mean of left and right"
    return text
