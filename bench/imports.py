"""The import floor: resident memory and CPU after each library kwsd's commands import.

    .venv/bin/python bench/imports.py [--rounds 5]

Each chain runs in fresh ``python`` processes (``--rounds`` of each, chains alternating), which
import one step after another and read their own ``VmRSS`` and CPU time after each step:

* ``kwsd detect``: numpy, the TFLite runtime (ai_edge_litert, else tflite_runtime), soxr,
  soundfile, then kwsd's own modules for ``kwsd detect``;
* ``kwsd run``: numpy, the runtime, soxr, sounddevice (PortAudio), gpiozero (with its mock
  pins), PyYAML, then kwsd's own modules for the daemon;
* microWakeWord: pymicro_wakeword alone (when installed: ``pip install -e ".[bench]"``).

kwsd's chains run with ``OPENBLAS_NUM_THREADS=1``, as the ``kwsd`` command sets it. Printed:
medians of the cumulative figures, and each step's addition. Nothing is loaded or run: what
a command adds beyond this floor (the model, its buffers, the code pages it touches) shows
in bench/memory.py and bench/daemon_latency.py.
"""

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    import resource

    def _report(label):
        with open("/proc/self/status") as status:
            kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        r = resource.getrusage(resource.RUSAGE_SELF)
        print(f"{label}\t{kb}\t{r.ru_utime + r.ru_stime}", flush=True)

    _report("python")
    import importlib
    for step in sys.argv[2:]:
        label, modules = step.split("=")
        for alternatives in modules.split(","):
            *first, last = alternatives.split("|")
            for name in first:
                try:
                    importlib.import_module(name)
                    break
                except ImportError:
                    pass
            else:
                importlib.import_module(last)
        _report(label)
    sys.exit(0)

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME = "ai_edge_litert.interpreter|tflite_runtime.interpreter"
CHAINS = {
    "kwsd detect": [("numpy", "numpy"), ("LiteRT", RUNTIME), ("soxr", "soxr"),
                    ("soundfile (libsndfile)", "soundfile"),
                    ("kwsd's modules", "kwsd.__main__,kwsd.detect,kwsd.spotter,kwsd.model")],
    "kwsd run": [("numpy", "numpy"), ("LiteRT", RUNTIME), ("soxr", "soxr"),
                 ("sounddevice (PortAudio)", "sounddevice"),
                 ("gpiozero", "gpiozero,gpiozero.pins.mock"), ("PyYAML", "yaml"),
                 ("kwsd's modules", "kwsd.__main__,kwsd.service_cli,kwsd.service,kwsd.capture,"
                                    "kwsd.actions")],
    "microWakeWord": [("pymicro_wakeword", "pymicro_wakeword")],
}


def run_chain(steps):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OPENBLAS_NUM_THREADS="1", GPIOZERO_PIN_FACTORY="mock")
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"]
                       + [f"{label}={modules}" for label, modules in steps],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"importing failed:\n{r.stderr[-2000:]}")
    return [(label, int(kb) / 1024, float(cpu)) for label, kb, cpu in
            (line.split("\t") for line in r.stdout.splitlines())]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(REPO, "bench"))
    from memory import precompile_kwsd
    precompile_kwsd()         # as installed: importing kwsd reads its bytecode
    chains = dict(CHAINS)
    try:
        import pymicro_wakeword  # noqa: F401
    except ImportError:
        del chains["microWakeWord"]
    runs = {name: [] for name in chains}
    for _ in range(args.rounds):
        for name, steps in chains.items():
            runs[name].append(run_chain(steps))
    print(f"medians of {args.rounds} fresh processes each; load average {os.getloadavg()[0]:.2f}")
    for name, rows in runs.items():
        print(f"\n| {name}: after importing | VmRSS | added | CPU s since exec | added |")
        print("|---|---|---|---|---|")
        prev_mb = prev_cpu = 0.0
        for i, (label, _, _) in enumerate(rows[0]):
            mb = statistics.median(r[i][1] for r in rows)
            cpu = statistics.median(r[i][2] for r in rows)
            print(f"| {'+ ' if i else ''}{label} | {mb:.1f} MB | "
                  f"{f'+{mb - prev_mb:.1f} MB' if i else ''} | {cpu:.3f} | "
                  f"{f'+{cpu - prev_cpu:.3f}' if i else ''} |")
            prev_mb, prev_cpu = mb, cpu


if __name__ == "__main__":
    main()
