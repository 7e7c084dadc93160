"""The daemon's subcommands: ``run``, ``listen``, ``devices``, ``check-config``,
``install-service`` (registered on the main ``kwsd`` parser by :func:`add_subcommands`).

    kwsd run [--config /etc/kwsd/kwsd.yaml] [--input FILE] [--model FILE]
    kwsd listen [--config FILE] [--model FILE] [--input FILE] [--actions]
    kwsd devices
    kwsd check-config [--config FILE]
    sudo kwsd install-service [--dry-run] [--root PREFIX]
"""

from __future__ import annotations

import os
import sys

from kwsd.config import DEFAULT_CONFIG_PATH


def cmd_run(args):
    """``kwsd run``: the service (foreground; systemd runs it as ``Type=notify``)."""
    from kwsd.service import run_service

    status = run_service(args.config, input_file=args.input, model=args.model,
                         verbose=getattr(args, "verbose", False))
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: PortAudio's atexit handler can wait on a device that is
    # gone, and a service must stop promptly once its outputs are safe.
    os._exit(status)


def _listen_config(args):
    from dataclasses import replace

    from kwsd.config import load_config, parse_config

    if args.config or (os.path.exists(DEFAULT_CONFIG_PATH) and not args.model):
        cfg = load_config(args.config or DEFAULT_CONFIG_PATH)
    else:
        cfg = parse_config({"model": args.model})
    if args.model:
        cfg = replace(cfg, model=os.path.abspath(args.model))
    if args.profile:
        cfg = replace(cfg, profile=args.profile)
    # a live view: it records nothing and keeps no meter (that is the daemon's)
    cfg = replace(cfg, capture=replace(cfg.capture, dir=None), state_dir=None)
    if args.device is not None:
        device = int(args.device) if args.device.isdigit() else args.device
        cfg = replace(cfg, audio=replace(cfg.audio, device=device))
    return cfg


def cmd_listen(args):
    """``kwsd listen``: a live bar per hop in the terminal."""
    from kwsd.listen import run_listen
    from kwsd.systemd import setup_logging

    cfg = _listen_config(args)
    setup_logging("debug" if getattr(args, "verbose", False) else "warning", journal=False)
    try:
        return run_listen(cfg, config_path=args.config, input_file=args.input,
                          actions=args.actions)
    except KeyboardInterrupt:
        return 0


def cmd_devices(args):
    """``kwsd devices``: input devices with their channels and default rates."""
    from kwsd.capture import default_input_device, list_input_devices

    devices = list_input_devices()
    if not devices:
        print("no audio input devices (is a microphone plugged in? `arecord -l` lists "
              "ALSA's view)")
        return 0
    default = default_input_device()
    print(f"{'index':>5}  {'channels':>8}  {'default rate':>12}  name")
    for index, name, channels, rate in devices:
        mark = " (default)" if index == default else ""
        print(f"{index:>5}  {channels:>8}  {int(rate):>12}  {name}{mark}")
    return 0


def cmd_check_config(args):
    """``kwsd check-config``: validate the config (and that its model loads)."""
    from kwsd.config import load_config
    from kwsd.model import load_model
    from kwsd.model_supervisor import detector_settings

    cfg = load_config(args.config)
    print(f"{args.config}: config OK")
    if not args.no_model:
        _check_model_exists(cfg.model, args.config)
        model = load_model(cfg.model, profile=cfg.profile)
        s = detector_settings(model, cfg)
        print(f"model {model.describe()}")
        print(f"detector: threshold {s.threshold:g}, smoothing {s.smoothing} hop(s), "
              f"refractory {s.refractory_s:g} s, a decision every {s.hop_s:g} s")
        if cfg.shadow_model:            # the daemon would refuse it (and run on without it)
            shadow = load_model(cfg.shadow_model)
            t = detector_settings(shadow, cfg)
            print(f"shadow model {shadow.describe()}, threshold {t.threshold:g} "
                  "(drives nothing)")
    return 0


def _check_model_exists(path, config_path):
    """A missing model file: say which step puts one there."""
    from kwsd.errors import ModelError
    from kwsd.install import MODEL_DIR

    if os.path.lexists(path):
        return
    if os.path.abspath(path).startswith(MODEL_DIR + "/"):
        how = ("`sudo kwsd install-service` puts the bundled model there; or set `model:` in "
               f"{config_path} to another file, or to null for the bundled model")
    else:
        how = f"set `model:` in {config_path} to the model file, or to null for the bundled model"
    raise ModelError(path, f"no such model file: {how}")


def add_subcommands(subparsers):
    """Register the daemon's subcommands on the ``kwsd`` argparse ``subparsers``."""
    from kwsd import install
    from kwsd.__main__ import profile_name

    p = subparsers.add_parser("run", help="the always-on service (systemd Type=notify)",
                              description="Listen continuously and drive the configured "
                              "actions; see systemd/kwsd.service.")
    p.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                   help=f"YAML config (default {DEFAULT_CONFIG_PATH})")
    p.add_argument("--input", metavar="FILE",
                   help="replay an audio file in real time instead of capturing")
    p.add_argument("--model", help="override the config's model")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("listen", help="live view of the scores in the terminal",
                              description="A bar per hop; detections highlighted. Outputs "
                              "stay off unless --actions.")
    p.add_argument("--config", help=f"YAML config (default {DEFAULT_CONFIG_PATH} if present)")
    p.add_argument("--model", help="a .tflite model (default: config's, else bundled)")
    p.add_argument("--profile", type=profile_name,
                   help="feature profile for a model without kwsd metadata")
    p.add_argument("--device", help="input device: index or name substring")
    p.add_argument("--input", metavar="FILE", help="replay an audio file instead")
    p.add_argument("--actions", action="store_true", help="also run the configured actions")
    p.set_defaults(func=cmd_listen)

    p = subparsers.add_parser("devices", help="list audio input devices")
    p.set_defaults(func=cmd_devices)

    p = subparsers.add_parser("check-config", help="validate a config file without starting",
                              description="Exit 0 if the config (and its model) is good, 78 "
                              "naming the key if the config is not, 65 if the model is not.")
    p.add_argument("--config", default=DEFAULT_CONFIG_PATH,
                   help=f"YAML config (default {DEFAULT_CONFIG_PATH})")
    p.add_argument("--no-model", action="store_true", help="do not load the model")
    p.set_defaults(func=cmd_check_config)

    install.add_parser(subparsers)
