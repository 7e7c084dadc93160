"""The systemd unit (checked by systemd-analyze itself), `kwsd install-service` into a temp
root, and the sd_notify protocol on a real unix datagram socket."""

import configparser
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kwsd.config import load_config
from kwsd.install import render_unit, unit_template
from kwsd.systemd import Notifier

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "kwsd.service"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")


def _unit(text):
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read_string(text)
    return cp


def test_unit_has_what_the_service_needs():
    u = _unit(UNIT.read_text())
    s = u["Service"]
    assert s["Type"] == "notify"
    assert int(s["WatchdogSec"]) > 0
    assert s["Restart"] == "on-failure"
    assert s["RestartPreventExitStatus"].split() == ["69", "78"]   # library, config
    assert "-HUP" in s["ExecReload"] and "$MAINPID" in s["ExecReload"]
    assert s["User"] == "kwsd"
    assert set(s["SupplementaryGroups"].split()) == {"audio", "gpio"}
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes"}.items():
        assert s[key] == value, key
    assert set(s["ReadOnlyPaths"].split()) == {"/etc/kwsd", "/var/lib/kwsd"}
    assert "--config /etc/kwsd/kwsd.yaml" in s["ExecStart"]
    assert u["Install"]["WantedBy"] == "multi-user.target"


@needs_analyze
def test_systemd_analyze_verify_reports_nothing(tmp_path):
    # ExecStart must name an existing program for verify: use this Python, as install does.
    unit = tmp_path / "kwsd.service"
    unit.write_text(render_unit(unit_template(), python=sys.executable))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == "", proc.stderr + proc.stdout


@needs_analyze
def test_systemd_analyze_would_catch_a_mistyped_key(tmp_path):
    """The check above can fail: a misspelt directive produces a warning we would see."""
    unit = tmp_path / "kwsd.service"
    unit.write_text(render_unit(unit_template(), python=sys.executable)
                    .replace("WatchdogSec=", "WatchdogSecs="))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert "WatchdogSecs" in proc.stderr


def test_render_unit_uses_this_python_and_keeps_home_readable_for_a_home_venv():
    text = render_unit(unit_template(), python="/home/pi/kwsd/.venv/bin/python")
    s = _unit(text)["Service"]
    assert s["ExecStart"] == ("/home/pi/kwsd/.venv/bin/python -m kwsd run "
                              "--config /etc/kwsd/kwsd.yaml")
    assert s["ProtectHome"] == "read-only"
    assert _unit(render_unit(unit_template(), python="/opt/kwsd/bin/python"))["Service"][
        "ProtectHome"] == "yes"


def _install(*args):
    return subprocess.run([sys.executable, "-m", "kwsd", "install-service", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("systemctl") is None, reason="systemctl not installed")
def test_install_service_into_a_root(tmp_path):
    model = tmp_path / "candidate.tflite"
    model.write_bytes(b"not really a model, copied as is")
    proc = _install("--root", str(tmp_path / "root"), "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "root"
    cfg = root / "etc/kwsd/kwsd.yaml"
    assert cfg.read_text() == (REPO / "kwsd/examples/kwsd.yaml").read_text()
    assert load_config(cfg).model == "/var/lib/kwsd/models/stop.tflite"
    assert (root / "var/lib/kwsd/models/stop.tflite").read_bytes() == model.read_bytes()
    unit = root / "etc/systemd/system/kwsd.service"
    assert _unit(unit.read_text())["Service"]["ExecStart"].startswith(sys.executable)
    wants = root / "etc/systemd/system/multi-user.target.wants/kwsd.service"
    assert wants.is_symlink()
    # A second run keeps the edited config.
    cfg.write_text(cfg.read_text().replace("on_time: 1.0", "on_time: 2.5"))
    assert _install("--root", str(root)).returncode == 0
    assert "on_time: 2.5" in cfg.read_text()


def test_install_service_dry_run_changes_nothing(tmp_path):
    proc = _install("--dry-run", "--root", str(tmp_path / "root"))
    assert proc.returncode == 0, proc.stderr
    assert "would: create directory" in proc.stdout and "kwsd.service" in proc.stdout
    assert not (tmp_path / "root").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root: the refusal cannot be seen")
def test_install_service_without_root_refuses_clearly():
    proc = _install()
    assert proc.returncode != 0 and "sudo" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


def test_notifier_sends_the_sd_notify_messages(listener):
    sock, path = listener
    n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000",
                      "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval == 2.0
    n.ready("model stop.tflite")
    assert sock.recv(4096) == b"READY=1\nSTATUS=model stop.tflite"
    n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.reloading()
    msg = sock.recv(4096).decode().split("\n")
    assert msg[0] == "RELOADING=1" and msg[1].startswith("MONOTONIC_USEC=")
    assert int(msg[1].split("=")[1]) > 0
    n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_notifier_abstract_socket_and_foreign_watchdog_pid():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"kwsd-test-{os.getpid()}"
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        n = Notifier(env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000",
                          "WATCHDOG_PID": "1"})
        assert n.watchdog_interval is None        # the watchdog is meant for another process
        assert n.status("hello")
        assert sock.recv(100) == b"STATUS=hello"
    finally:
        sock.close()
