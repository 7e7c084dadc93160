"""What kwsd loads at start: `kwsd detect` with the log-mel model needs neither the daemon's
hardware libraries nor scipy (each costs memory and start-up time on a Pi)."""

import subprocess
import sys

import soundfile

from conftest import REPO

# Run kwsd's own main(); at exit print the top-level modules that were imported and the
# number of threads the process has.
_RUN = ("import atexit, os, sys\n"
        "atexit.register(lambda: print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules}))))\n"
        "atexit.register(lambda: print('THREADS', len(os.listdir('/proc/self/task'))))\n"
        "_exit = os._exit\n"      # `kwsd run` ends with os._exit: run the atexit handlers first
        "os._exit = lambda status: (atexit._run_exitfuncs(), sys.stdout.flush(), _exit(status))\n"
        "sys.argv[0] = 'kwsd'\n"
        "from kwsd.__main__ import main\n"
        "sys.exit(main())\n")


def _at_exit(args, env, key):
    r = subprocess.run([sys.executable, "-c", _RUN] + args, capture_output=True, text=True,
                       env=env, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith(key + " "))
    return line.split()[1:]


def _modules(args, env):
    return set(_at_exit(args, env, "MODULES"))


def test_kwsd_detect_with_the_bundled_model_loads_no_hardware_library_nor_scipy(subprocess_env):
    mods = _modules(["detect", "kwsd/data/demo.flac"], subprocess_env)
    assert {"kwsd", "numpy", "soundfile"} <= mods
    assert not mods & {"gpiozero", "sounddevice", "scipy", "python_speech_features", "tensorflow"}
    # nor the daemon's config/YAML, the installer or the room commands (their hashlib)
    assert not mods & {"yaml", "hashlib", "pwd", "grp"}


def test_kwsd_starts_numpy_with_one_blas_thread(subprocess_env):
    """The entry point sets OPENBLAS_NUM_THREADS=1 before numpy loads: OpenBLAS starts no
    thread pool (kwsd does no large linear algebra, and the pool's start costs CPU at every
    start), so `kwsd detect` runs in one thread."""
    env = {k: v for k, v in subprocess_env.items() if k != "OPENBLAS_NUM_THREADS"}
    assert _at_exit(["detect", "kwsd/data/demo.flac"], env, "THREADS") == ["1"]


def test_kwsd_run_loads_neither_the_room_commands_nor_hashlib_nor_the_journal(subprocess_env,
                                                                               tmp_path):
    """The daemon with GPIO actions and the meter on (systemd's $STATE_DIRECTORY), replaying
    one second of the demo: not the room commands, not OpenSSL (hashlib, 3.6 MB resident),
    not systemd-python's journal while stderr is not the journal."""
    x, rate = soundfile.read("kwsd/data/demo.flac", dtype="int16")
    soundfile.write(tmp_path / "one-second.flac", x[:rate], rate)
    env = dict(subprocess_env, STATE_DIRECTORY=str(tmp_path))
    env.pop("JOURNAL_STREAM", None)
    mods = _modules(["run", "--config", "kwsd/examples/demo.yaml",
                     "--input", str(tmp_path / "one-second.flac")], env)
    assert {"kwsd", "numpy", "gpiozero", "yaml"} <= mods
    assert not mods & {"hashlib", "_hashlib", "systemd", "scipy", "python_speech_features"}
    assert (tmp_path / "meter.json").is_file()          # the meter was on
