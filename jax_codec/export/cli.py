"""`python -m jax_codec export`: one part of a codec as a file a runtime without jax_codec
loads (see `jax_codec.export`)."""

from __future__ import annotations

import argparse
import os

from jax_codec.cli_errors import CliError, guarded


def format_export(meta: dict) -> str:
    strides = ", ".join(str(s) for s in meta["vq_strides"])
    stream = (
        f"\nstream step: {meta['chunk_frames']} frames ({meta['chunk_samples']} samples) x "
        f"{meta['batch']} stream(s), {len(meta['state'])} state arrays (zeros to start), "
        f"delay {meta['delay_chunks']} chunk(s)"
        if "chunk_frames" in meta
        else ""
    )
    where = "/".join(meta["platforms"]) if "platforms" in meta else meta["converter"]
    shapes = "" if meta["symbolic_dims"] or "chunk_frames" in meta else ", fixed shapes"
    return (
        f"wrote {meta['output']} ({meta['bytes']:,} bytes, {meta['format']}, {where}{shapes}) "
        f"and {meta['output']}.json\n"
        f"{meta['model']}: {meta['part']}, {meta['n_quantizers']} of {meta['num_quantizers']} "
        f"levels (strides {strides}), {meta['sample_rate']} Hz, {meta['channels']} channel(s), "
        f"audio in blocks of {meta['length_multiple']} samples, {meta['bitrate_kbps']:.2f} kbps"
        + stream
    )


def cmd_export(args: argparse.Namespace) -> int:
    def body():
        from jax_codec.export.artifact import ExportError, check_options, export_file
        from jax_codec.inference.cli import check_output, load_from_args, print_report

        check_output(args.output, None)
        if os.path.exists(args.output) and not args.overwrite:
            raise CliError(f"{args.output} exists; pass --overwrite to replace it")
        stream = args.part.startswith("stream_")
        if args.batch is not None and args.batch < 1:
            raise CliError(f"--batch must be >= 1, got {args.batch}")
        if args.batch is not None and not stream and args.blocks is None:
            raise CliError(
                "--batch fixes the batch of a stream part or, with --blocks, of "
                "the encoder or decoder; without --blocks the batch is symbolic"
            )
        if stream and not (args.chunk_frames or 0) >= 1:
            raise CliError(f"--part {args.part} needs --chunk_frames N (N >= 1)")
        platforms = tuple(p for p in (args.platforms or "").split(",") if p) or None
        try:
            check_options(args.part, args.format, platforms, args.blocks)  # before loading
            loaded = load_from_args(args, priors=None)
            meta = export_file(
                loaded, args.part, args.output, args.n_quantizers, platforms,
                chunk_frames=args.chunk_frames, batch=args.batch or 1, fmt=args.format,
                blocks=args.blocks,
            )  # fmt: skip
        except ExportError as e:
            raise CliError(str(e)) from None
        meta["output"] = args.output
        print_report(meta, args.json, format_export)

    return guarded(body)


def add_export_parser(sub) -> None:
    from jax_codec.export.artifact import FORMATS, PARTS
    from jax_codec.inference.cli import add_command, add_model_args, add_n_quantizers_arg

    p = add_command(
        sub,
        "export",
        "one part of a codec (encoder, decoder or a streaming step) as serialized StableHLO, "
        "ONNX or LiteRT (TFLite), with its metadata",
        "--checkpoint runs/base --part encoder --output base_encoder.stablehlo",
        "--config configs/base.py:runlocal --random_init --part decoder --n_quantizers 2 "
        "--output dec.stablehlo",
        "--checkpoint runs/base --part stream_encoder --chunk_frames 4 --output enc_step.stablehlo",
        "--checkpoint runs/base --part decoder --format onnx --output base_dec.onnx",
        "--checkpoint runs/base --part encoder --format tflite --blocks 22 --output enc.tflite",
    )
    add_model_args(p)
    p.add_argument("--part", required=True, choices=PARTS, help="what to export")
    p.add_argument("--format", default="stablehlo", choices=FORMATS, help="artifact format")
    add_n_quantizers_arg(p)
    p.add_argument("--chunk_frames", type=int, help="stream parts: latent frames per chunk (step)")
    p.add_argument(
        "--batch", type=int, help="stream parts: streams per step; with --blocks: batch size"
    )
    p.add_argument(
        "--blocks",
        type=int,
        help="encoder/decoder: fixed length of N blocks (length_multiple samples each) instead "
        "of a symbolic one; needed by --format tflite",
    )
    p.add_argument("--output", required=True, help="the artifact (metadata: OUTPUT.json)")
    p.add_argument(
        "--platforms",
        help="stablehlo: comma-separated, e.g. cpu,cuda,tpu (default: this machine's backend)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--json", action="store_true", help="print the metadata as one JSON object")
    p.set_defaults(func=cmd_export)
