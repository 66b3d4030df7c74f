"""The `.jcodec` file format: streaming container for hierarchical codec codes.

Pure numpy (range coding via `constriction`); no JAX, no model. Spec: docs/bitstream.md.

    header = Header(sample_rate=44100, channels=2, num_samples=n, num_frames=t, hop_length=512,
                    strides=(4, 2, 1, 1, 1, 1, 1, 1), codebook_sizes=1024, model_id="base",
                    model_hash=sha)    # channel_mode=CHANNELS_JOINT: one stream for the pair
    with Writer("song.jcodec", header, priors=None) as w:   # atomic for paths
        for chunk in split_chunks(codes, header):            # or chunks as they are made
            w.write_chunk(chunk)
    with Reader("song.jcodec") as r:
        check_model(r.header, "base", sha)
        for chunk in r: ...                                  # or r.read_all()
"""

from jax_codec.bitstream.entropy import (
    PRECISION,
    BitstreamError,
    bits_for,
    estimate_priors,
    load_priors,
    pack_codes,
    priors_sha256,
    quantize_priors,
    save_priors,
    unpack_codes,
)
from jax_codec.bitstream.format import (
    CHANNELS_INDEPENDENT,
    CHANNELS_JOINT,
    FORMAT_VERSION,
    MAGIC,
    MIN_FORMAT_VERSION,
    Header,
    Reader,
    Writer,
    check_model,
    info,
    read_file,
    resampled_length,
    split_chunks,
    write_file,
)

__all__ = [
    "CHANNELS_INDEPENDENT",
    "CHANNELS_JOINT",
    "FORMAT_VERSION",
    "MIN_FORMAT_VERSION",
    "MAGIC",
    "PRECISION",
    "BitstreamError",
    "Header",
    "Reader",
    "Writer",
    "bits_for",
    "check_model",
    "estimate_priors",
    "info",
    "load_priors",
    "pack_codes",
    "priors_sha256",
    "quantize_priors",
    "read_file",
    "resampled_length",
    "save_priors",
    "split_chunks",
    "unpack_codes",
    "write_file",
]
