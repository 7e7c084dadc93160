"""The ``kwsd`` command line.

    kwsd detect FILE...          files through the daemon's decision path
    kwsd run                     the always-on service (see ``kwsd run --help``)

Errors a user can cause print one message naming the file, key or value, and exit with
the status listed in :mod:`kwsd.errors`; never a traceback.
"""

from __future__ import annotations

import os

# One BLAS thread, set before anything imports numpy (``setdefault``: a user's own setting
# wins): kwsd does no large linear algebra, and OpenBLAS starting its thread pool at
# ``import numpy`` costs about 0.05-0.08 s of CPU at every start.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402

from . import __version__  # noqa: E402
from .errors import EX_CONFIG, EX_USAGE, KwsdError  # noqa: E402


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the exit status the README promises for a bad command line (64)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")


def finite_float(text) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def profile_name(text) -> str:
    """An argparse type: the name of a built-in feature profile."""
    from .profiles import PROFILES

    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"unknown feature profile {text!r} "
                                         f"(known: {', '.join(PROFILES)})")
    return text


def resolve_model(args, cfg=None):
    """The model path: ``--model``, else the config's ``model``, else the bundled model."""
    from .model import BUNDLED_MODEL

    return args.model or (cfg.model if cfg else None) or BUNDLED_MODEL


def _detector_overrides(args, cfg=None) -> dict:
    overrides = cfg.detector.overrides() if cfg else {}
    for key in ("threshold", "smoothing", "refractory_s", "hop_s"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    return overrides


def cmd_detect(args) -> int:
    from .detect import run_detect
    from .model import load_model
    from .spotter import resolve_settings

    if args.info:
        from .room_cli import describe_model
        print(describe_model(load_model(args.info, profile=args.profile)))
        return 0
    if not args.files:
        print("kwsd detect: give audio FILEs (or --info MODEL)", file=sys.stderr)
        return EX_USAGE
    cfg = None
    if args.config:
        from .config import load_config
        cfg = load_config(args.config)
    model = load_model(resolve_model(args, cfg),
                       profile=args.profile or (cfg.profile if cfg else None))
    try:
        settings = resolve_settings(model, _detector_overrides(args, cfg))
    except ValueError as exc:
        print(f"kwsd detect: {exc}", file=sys.stderr)
        return EX_CONFIG
    return run_detect(args.files, model, settings, as_json=args.json, scores=args.scores)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``kwsd`` parser. With ``command="detect"`` only that subcommand is registered: the
    daemon's and the room commands' modules (config, YAML, install, hashlib) stay unloaded,
    which keeps ``kwsd detect`` lean (about 7 MB less resident memory); with a daemon command
    (``run``...) the room commands are not registered."""
    parser = ArgumentParser(prog="kwsd", description="Always-listening 'stop' keyword spotter.")
    parser.add_argument("--version", action="version", version=f"kwsd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("detect", help="detect the keyword in audio files (WAV, FLAC)",
                       description="Run files through the daemon's decision path, block by block.")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--info", metavar="MODEL",
                   help="print a model's metadata and threshold table (false accepts/hour, "
                        "recall) instead")
    p.add_argument("--model", help="a .tflite model (default: the config's, else the bundled one)")
    p.add_argument("--config", help="a kwsd YAML config to take the model and detector settings from")
    p.add_argument("--profile", type=profile_name,
                   help="feature profile for a model without kwsd metadata")
    p.add_argument("--threshold", type=finite_float, help="override the model's threshold (0..1]")
    p.add_argument("--smoothing", type=int, help="override the model's smoothing (hops)")
    p.add_argument("--refractory-s", dest="refractory_s", type=finite_float,
                   help="override the refractory period")
    p.add_argument("--hop-s", dest="hop_s", type=finite_float,
                   help="override seconds between decisions")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--scores", action="store_true", help="also print every hop's score")
    p.set_defaults(func=cmd_detect)

    if command == "detect":
        return parser
    from .service_cli import add_subcommands
    add_subcommands(sub)                # run, listen, devices, check-config, install-service
    if command in sub.choices:          # a daemon command: the room commands (their numpy
        return parser                   # captures and meter code, hashlib) stay unloaded
    from .room_cli import add_subcommands as add_room_subcommands
    add_room_subcommands(sub)           # stats, captures, enroll
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
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
