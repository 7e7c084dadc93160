"""``kwsd install-service``: set kwsd up as a systemd service on a Pi.

Creates the ``kwsd`` system user (and the ``gpio`` group if the system lacks one),
``/etc/kwsd/`` with the example config, the model directory ``/var/lib/kwsd/models/`` (with
the bundled model, or ``--model FILE``), installs ``systemd/kwsd.service`` with ``ExecStart=``
pointing at this Python environment, and enables it.  Existing config and model files are
kept.  ``--root PREFIX`` installs into a tree under PREFIX (no user is created, ``systemctl
--root`` enables the unit there); ``--dry-run`` only prints what it would do.

On a machine not booted with systemd (a container, a chroot) the files are installed and the
unit enabled for the next boot, and it says how to run kwsd meanwhile.  A Python
environment under ``/tmp`` is refused: the unit's ``PrivateTmp=yes`` would hide it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from kwsd.errors import KwsdError
from kwsd.model import BUNDLED_MODEL

UNIT_NAME = "kwsd.service"
CONFIG_DIR = "/etc/kwsd"
MODEL_DIR = "/var/lib/kwsd/models"
UNIT_DIR = "/etc/systemd/system"
# The unit has PrivateTmp=yes: the service sees an empty /tmp and /var/tmp of its own.
PRIVATE_TMP = ("/tmp/", "/var/tmp/")


class InstallError(KwsdError):
    """Installation could not proceed (not root, a command failed)."""

    exit_status = 77   # EX_NOPERM / generic failure of the install step


def unit_template():
    """The text of ``systemd/kwsd.service`` (from the source tree or the installed package)."""
    here = Path(__file__).resolve().parent
    # the source tree's systemd/kwsd.service, or its copy packaged as kwsd/examples/
    for cand in (here.parent / "systemd" / UNIT_NAME, here / "examples" / UNIT_NAME):
        if cand.is_file():
            return cand.read_text()
    raise InstallError(f"{UNIT_NAME} not found beside the kwsd package")


def render_unit(template, python=None, config=CONFIG_DIR + "/kwsd.yaml"):
    """The unit with ``ExecStart=`` running ``python -m kwsd run --config config``.

    >>> u = render_unit("[Service]\\nExecStart=/opt/kwsd/bin/kwsd run\\n", python="/usr/bin/python3")
    >>> u.splitlines()[1]
    'ExecStart=/usr/bin/python3 -m kwsd run --config /etc/kwsd/kwsd.yaml'
    """
    python = python or sys.executable
    line = f"ExecStart={shlex.quote(python)} -m kwsd run --config {shlex.quote(config)}"
    text = re.sub(r"^ExecStart=.*$", lambda m: line, template, count=1, flags=re.M)
    if python.startswith(("/home/", "/root/")):
        # ProtectHome=yes would hide the interpreter; keep home directories read-only instead.
        text = re.sub(r"^ProtectHome=yes$", "ProtectHome=read-only", text, flags=re.M)
    return text


class Installer:
    """Carries out (or, with ``dry_run``, prints) the installation steps."""

    def __init__(self, root=None, dry_run=False, user="kwsd", model=None, enable=True,
                 start=False, out=None):
        self.root = Path(root) if root else None
        self.dry_run = dry_run
        self.user = user
        self.model = Path(model) if model else None
        self.enable = enable
        self.start = start
        self.out = out or sys.stdout

    def _p(self, path):
        return Path(str(self.root) + path) if self.root else Path(path)

    def _say(self, text):
        print(("would: " if self.dry_run else "") + text, file=self.out)

    def _note(self, text):
        print(text, file=self.out)

    def _run(self, argv):
        self._say("run " + shlex.join(argv))
        if self.dry_run:
            return
        try:
            subprocess.run(argv, check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise InstallError(f"{shlex.join(argv)} failed: {err}") from None

    def _mkdir(self, path, mode=0o755):
        target = self._p(path)
        self._say(f"create directory {target}")
        if not self.dry_run:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(mode)

    def _copy(self, src, path, mode=0o644):
        target = self._p(path)
        if target.exists():
            self._say(f"keep existing {target}")
            return
        self._say(f"copy {src} -> {target}")
        if not self.dry_run:
            shutil.copyfile(src, target)
            target.chmod(mode)

    def run(self):
        """Do every step; raise :class:`InstallError` on the first that fails."""
        if not self.root and not self.dry_run and os.geteuid() != 0:
            raise InstallError("install-service needs root: run it with sudo "
                               "(or try --dry-run to see what it does)")
        self._check_not_in_tmp()
        if not self.root:
            self._ensure_group("gpio")
            self._ensure_user()
        else:
            self._say(f"(--root: not creating user {self.user!r}; create it on the target)")
        self._mkdir(CONFIG_DIR)
        self._mkdir(MODEL_DIR)
        example = resources.files("kwsd") / "examples" / "kwsd.yaml"
        self._copy(example, CONFIG_DIR + "/kwsd.yaml")
        model = self.model or (BUNDLED_MODEL if os.path.exists(BUNDLED_MODEL) else None)
        if model is not None:
            self._copy(model, MODEL_DIR + "/stop.tflite")
        else:
            self._say(f"no model bundled: copy one to {MODEL_DIR}/stop.tflite")
        unit = render_unit(unit_template(), config=CONFIG_DIR + "/kwsd.yaml")
        if self.user != "kwsd":
            unit = re.sub(r"^(User|Group)=kwsd$", lambda m: f"{m.group(1)}={self.user}",
                          unit, flags=re.M)
        target = self._p(UNIT_DIR + "/" + UNIT_NAME)
        self._say(f"install {target}")
        if not self.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(unit)
            target.chmod(0o644)
        if self.root:
            if self.enable:
                self._run(["systemctl", f"--root={self.root}", "enable", UNIT_NAME])
            if not self.dry_run:
                self._note(f"done: {UNIT_NAME} installed under {self.root}"
                           + (" and enabled" if self.enable else ""))
        elif not systemd_running():
            self._without_systemd()
        else:
            self._run(["systemctl", "daemon-reload"])
            if self.enable:
                self._run(["systemctl", "enable"] + (["--now"] if self.start else [])
                          + [UNIT_NAME])
            sudo = _sudo()
            self._note(f"done. Next: edit {CONFIG_DIR}/kwsd.yaml (device, pins, actions), check "
                      f"it with `{sudo}{kwsd_command()} check-config`, then "
                      f"`{sudo}systemctl {'restart' if self.start else 'start'} kwsd`; "
                      "logs: `journalctl -u kwsd -f`")

    def _without_systemd(self):
        """The files are in place, but no systemd runs here to load or start the unit."""
        enabled = False
        if self.enable:
            if shutil.which("systemctl"):
                try:
                    self._run(["systemctl", "enable", UNIT_NAME])   # works offline: symlinks
                    enabled = True
                except InstallError as err:
                    self._note(f"could not enable the unit ({err})")
            else:
                self._note("systemctl is not installed: the unit is not enabled")
        sudo = _sudo()
        self._note("systemd is not running on this machine (it was not booted with systemd: a "
                   "container or chroot?), so nothing can load or start the unit here.")
        self._note(f"Next: on a machine booted with systemd, kwsd starts at boot"
                   + (" (the unit is enabled)" if enabled else
                      f" once enabled (`{sudo}systemctl enable kwsd`)")
                   + f", or now with `{sudo}systemctl daemon-reload && {sudo}systemctl start "
                   f"kwsd`. To run kwsd here without systemd: `{sudo}{kwsd_command()} run "
                   f"--config {CONFIG_DIR}/kwsd.yaml`.")
        if self.start:
            raise InstallError("--start: systemd is not running here, so kwsd cannot be "
                               "started" + ("" if self.dry_run else
                                            " (everything else is installed; see above)"))

    def _check_not_in_tmp(self):
        """Refuse a Python environment or kwsd package under /tmp (PrivateTmp hides it)."""
        package = str(Path(__file__).resolve().parent)
        for what, place in (("Python environment", sys.executable), ("kwsd package", package)):
            if not place.startswith(PRIVATE_TMP):
                continue
            tmp = next(t for t in PRIVATE_TMP if place.startswith(t)).rstrip("/")
            msg = (f"this {what} is under {tmp} ({place}): the service runs with "
                   "PrivateTmp=yes and would not see it. Install kwsd somewhere permanent "
                   "first, e.g. `sudo python3 -m venv /opt/kwsd && sudo /opt/kwsd/bin/pip "
                   f"install '{_source()}[daemon,journal]'`, then run "
                   "`sudo /opt/kwsd/bin/kwsd install-service`")
            if self.root:   # an image: say so, the target may differ
                self._note("warning: " + msg)
            else:
                raise InstallError(msg)

    def _ensure_group(self, name):
        try:
            grp.getgrnam(name)
        except KeyError:
            self._run(["groupadd", "--system", name])

    def _ensure_user(self):
        try:
            pwd.getpwnam(self.user)
            self._say(f"user {self.user!r} exists")
        except KeyError:
            self._run(["useradd", "--system", "--user-group", "--no-create-home",
                       "--home-dir", "/var/lib/kwsd", "--shell", "/usr/sbin/nologin",
                       "--groups", "audio,gpio", self.user])


def systemd_running():
    """True when this machine was booted with systemd (``sd_booted()``'s test)."""
    return os.path.isdir("/run/systemd/system")


def kwsd_command():
    """How to run this kwsd: the ``kwsd`` script beside this Python, else ``python -m kwsd``."""
    script = Path(sys.executable).parent / "kwsd"
    return str(script) if script.is_file() else f"{sys.executable} -m kwsd"


def _source():
    """What to ``pip install`` kwsd from: this checkout, else the package name."""
    checkout = Path(__file__).resolve().parent.parent
    return str(checkout) if (checkout / "pyproject.toml").is_file() else "kwsd"


def _sudo():
    """``"sudo "`` when the user got root through sudo, else ``""`` (already root)."""
    return "sudo " if os.environ.get("SUDO_USER") else ""


def add_parser(subparsers):
    """Register ``kwsd install-service``."""
    p = subparsers.add_parser("install-service", help="install and enable the systemd unit",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("--root", metavar="PREFIX", help="install into a tree under PREFIX")
    p.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    p.add_argument("--user", default="kwsd", help="service user (default: kwsd)")
    p.add_argument("--model", metavar="FILE", help="model to install (default: the bundled one)")
    p.add_argument("--no-enable", dest="enable", action="store_false",
                   help="install the unit without enabling it")
    p.add_argument("--start", action="store_true", help="also start it now")
    p.set_defaults(func=lambda args: Installer(args.root, args.dry_run, args.user, args.model,
                                               args.enable, args.start).run() or 0)
    return p
