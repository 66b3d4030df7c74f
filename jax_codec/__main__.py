"""`python -m jax_codec COMMAND ...`: command-line tools.

info --config=configs/base.py[:variant] [--json]   architecture summary of a config
info FILE.jcodec [--json]                          header, duration and bitrate of a file
stream IN OUT (--checkpoint DIR | --config FILE --random_init) [--chunk_ms 20] [--json]
                                                   encode+decode chunk by chunk, in real time
compress IN OUT.jcodec (--checkpoint DIR | --config FILE --random_init)
         [--kbps X | --n_quantizers K] [--entropy auto|on|off] [--json]
                                                   audio file -> .jcodec (bounded memory)
decompress IN.jcodec OUT.wav (--checkpoint DIR | ...) [--sample_rate SR]
                                                   .jcodec -> audio file
priors (--checkpoint DIR | ...) [--data SPEC] [--seconds 600] [--output FILE]
                                                   entropy-coding priors from training audio
demo (--checkpoint DIR | --config FILE --random_init) [--port 7860] [--host 127.0.0.1]
     [--max_seconds 30]                            interactive web demo (Gradio)
"""

from __future__ import annotations

import argparse
import json
import sys


class _Parser(argparse.ArgumentParser):
    """Reports usage errors as one line (`error: ...`), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _cmd_info(args: argparse.Namespace) -> int:
    if args.file:
        if args.config:
            print("error: give either FILE.jcodec or --config, not both", file=sys.stderr)
            return 2
        from jax_codec.inference.compress import cmd_info

        return cmd_info(args)

    from jax_codec.config import ConfigError, load_config
    from jax_codec.models.summary import codec_summary, format_summary

    if not args.config:
        print(
            "error: info needs --config=configs/FILE.py[:variant] or a .jcodec file",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = codec_summary(config)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m jax_codec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="summary of a codec config, or of a .jcodec file")
    info.add_argument("file", nargs="?", help="a .jcodec file (instead of --config)")
    info.add_argument("--config", help="configs/FILE.py[:variant,...]")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_cmd_info)
    from jax_codec.demo.cli import add_demo_parser
    from jax_codec.inference.cli import add_stream_parser
    from jax_codec.inference.compress import add_parsers

    add_stream_parser(sub)
    add_parsers(sub)
    add_demo_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
