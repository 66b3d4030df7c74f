r"""Decode a folder of audio once into a prepared folder for `data.source=prepared:PATH`.

  python -m jax_codec prepare --data=folder:/data/flac --output=/data/flac-44k-mono \
      [--sample_rate=44100] [--channels=1] [--chunk_seconds=10] [--shard_seconds=3600] \
      [--overwrite]

(alias: `python -m jax_codec.data.prepare`). `--data` is a data source spec as everywhere:
`folder:PATH`, or the plain folder path; `--input=DIR` is its deprecated name. Files are found
and checked as by the `folder:` source (bad ones are skipped and listed), resampled to
`--sample_rate`, mixed to `--channels` and stored as 16-bit PCM in ArrayRecord shards with a
manifest.json (format: `jax_codec.data.prepared`). Exit code 2 on bad input.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from jax_codec.cli_errors import fail

_DATA = flags.DEFINE_string(
    "data", None, "Audio to prepare: folder:PATH or a folder path (searched recursively)."
)
_INPUT = flags.DEFINE_string("input", None, "Deprecated name of --data (a folder path).")
_OUTPUT = flags.DEFINE_string("output", None, "Prepared folder to write (must not exist).")
_SAMPLE_RATE = flags.DEFINE_integer("sample_rate", 44100, "Sample rate to store (the model's).")
_CHANNELS = flags.DEFINE_integer("channels", 1, "1: mono mixdown, 2: stereo.")
_CHUNK = flags.DEFINE_float("chunk_seconds", 10.0, "Audio per record (one chunk of one file).")
_SHARD = flags.DEFINE_float("shard_seconds", 3600.0, "Audio per ArrayRecord shard file.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty output.")
_WORKERS = flags.DEFINE_integer("workers", None, "Decoding threads (default: cores, up to 8).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if _INPUT.value:
        print("note: --input is deprecated; use --data=folder:DIR", file=sys.stderr)
        if _DATA.value:
            fail("give --data only (--input is its deprecated name)")
    spec = _DATA.value or _INPUT.value
    if not spec or not _OUTPUT.value:
        fail("--data=folder:DIR and --output=DIR are required")
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from jax_codec.data.prepared import write_prepared
    from jax_codec.data.sources import _duration, local_audio_path

    try:
        manifest = write_prepared(
            local_audio_path(spec),
            _OUTPUT.value,
            sample_rate=_SAMPLE_RATE.value,
            channels=_CHANNELS.value,
            chunk_seconds=_CHUNK.value,
            shard_seconds=_SHARD.value,
            overwrite=_OVERWRITE.value,
            workers=_WORKERS.value,
            verbose=True,
        )
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
        fail(" ".join(str(e).split()))  # one line
    except OSError as e:
        fail(f"{type(e).__name__}: {' '.join(str(e).split())}")
    print(
        f"prepared {len(manifest['clips'])} clips, {_duration(manifest['seconds'])} of audio "
        f"({manifest['sample_rate']} Hz, {manifest['channels']} ch) in "
        f"{len(manifest['shards'])} shards: {os.path.abspath(_OUTPUT.value)}"
    )
    print(f"train with --config.data.source=prepared:{_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
