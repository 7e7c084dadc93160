"""What kwsd loads at start: `kwsd detect` with the log-mel model needs neither the daemon's
hardware libraries nor scipy (each costs memory and start-up time on a Pi)."""

import subprocess
import sys

from conftest import REPO

# Run kwsd's own main(); at exit print the top-level modules that were imported.
_RUN = ("import atexit, sys\n"
        "atexit.register(lambda: print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules}))))\n"
        "sys.argv[0] = 'kwsd'\n"
        "from kwsd.__main__ import main\n"
        "sys.exit(main())\n")


def _modules(args, env):
    r = subprocess.run([sys.executable, "-c", _RUN] + args, capture_output=True, text=True,
                       env=env, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


def test_kwsd_detect_with_the_bundled_model_loads_no_hardware_library_nor_scipy(subprocess_env):
    mods = _modules(["detect", "kwsd/data/demo.flac"], subprocess_env)
    assert {"kwsd", "numpy", "soundfile"} <= mods
    assert not mods & {"gpiozero", "sounddevice", "scipy", "python_speech_features", "tensorflow"}
    # nor the daemon's config/YAML, the installer or the room commands (their hashlib)
    assert not mods & {"yaml", "hashlib", "pwd", "grp"}
