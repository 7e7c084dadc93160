"""The ``kwsd`` command line.

    kwsd detect FILE...          files through the daemon's decision path
    kwsd run                     the always-on service (see ``kwsd run --help``)

Errors a user can cause print one message naming the file, key or value, and exit with
the status listed in :mod:`kwsd.errors`; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .errors import EX_CONFIG, KwsdError



def resolve_model(args, cfg=None):
    """The model path: ``--model``, else the config's ``model``, else the bundled model."""
    from .model import BUNDLED_MODEL

    return args.model or (cfg or {}).get("model") or BUNDLED_MODEL


def _detector_overrides(args, cfg=None) -> dict:
    overrides = dict((cfg or {}).get("detector") or {})
    overrides.pop("max_lag_s", None)
    for key in ("threshold", "smoothing", "refractory_s", "hop_s"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return overrides


def cmd_detect(args) -> int:
    from .detect import run_detect
    from .model import load_model
    from .spotter import resolve_settings

    cfg = None
    if args.config:
        from .config import load_config
        cfg = load_config(args.config)
    model = load_model(resolve_model(args, cfg), profile=args.profile or (cfg or {}).get("profile"))
    try:
        settings = resolve_settings(model, _detector_overrides(args, cfg))
    except ValueError as exc:
        print(f"kwsd detect: {exc}", file=sys.stderr)
        return EX_CONFIG
    return run_detect(args.files, model, settings, as_json=args.json, scores=args.scores)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kwsd", description="Always-listening 'stop' keyword spotter.")
    parser.add_argument("--version", action="version", version=f"kwsd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("detect", help="detect the keyword in audio files (WAV, FLAC)",
                       description="Run files through the daemon's decision path, block by block.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--model", help="a .tflite model (default: the config's, else the bundled one)")
    p.add_argument("--config", help="a kwsd YAML config to take the model and detector settings from")
    p.add_argument("--profile", help="feature profile for a model without kwsd metadata")
    p.add_argument("--threshold", type=float, help="override the model's threshold (0..1]")
    p.add_argument("--smoothing", type=int, help="override the model's smoothing (hops)")
    p.add_argument("--refractory-s", dest="refractory_s", type=float, help="override the refractory period")
    p.add_argument("--hop-s", dest="hop_s", type=float, help="override seconds between decisions")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--scores", action="store_true", help="also print every hop's score")
    p.set_defaults(func=cmd_detect)

    try:
        from .service_cli import add_subcommands
    except ImportError:
        add_subcommands = None
    if add_subcommands is not None:
        add_subcommands(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="kwsd: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except KwsdError as exc:
        print(f"kwsd {args.command}: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
