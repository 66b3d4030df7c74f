"""`python -m jax_codec COMMAND ...`: command-line tools.

info --config=configs/base.py[:variant] [--json]   architecture summary of a config
stream IN OUT (--checkpoint DIR | --config FILE --random_init) [--chunk_ms 20] [--json]
                                                   encode+decode chunk by chunk, in real time
"""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    from jax_codec.config import ConfigError, load_config
    from jax_codec.models.summary import codec_summary, format_summary

    if not args.config:
        print("error: info needs --config=configs/FILE.py[:variant]", file=sys.stderr)
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
    parser = argparse.ArgumentParser(
        prog="python -m jax_codec",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="summary of a codec config")
    info.add_argument("--config", help="configs/FILE.py[:variant,...]")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_cmd_info)
    from jax_codec.inference.cli import add_stream_parser

    add_stream_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
