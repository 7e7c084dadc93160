"""Synthetic household knocks: negatives for training, and a development signal.

A keyword spotter on a table hears more than speech: a cup put down, a door, footsteps, a
switch, someone picking the microphone up. Such sounds are short bursts with sharp onsets
and low, decaying bodies, and a model that has not learnt them can hear "s", "t" and "p" in
them: the one real held-out recording of handling noise in ``../shared/data`` (thumps and
clicks) fired every model this project trained. ``kwsd-train synth --knock-minutes N``
writes recordings made here into the corpus's ``_knocks_/`` folder, where ``kwsd-train
prepare --synthetic`` cuts them into negative windows (training only) and ``kwsd-train
evaluate --synthetic-speech`` counts false accepts on them under the language ``knocks``.
They are never a claim about real rooms.

A recording is a quiet noise floor (-70 to -50 dBFS) with clusters of one to four events,
0.8 s apart on average; each event is one of:

- a **thump** (something set down, a step, a door): a damped 25-180 Hz sine with low-passed
  noise, 30-250 ms;
- a **knock** (a knuckle, a cup, a plate): two or three damped resonances at 200-2500 Hz
  after a click;
- a **click** (a switch, a key): 1-6 ms of broadband noise;
- a **rub** (handling, a cloth, a sleeve on the microphone): 50-300 ms of band noise;

each at its own level, 0 to 32 dB below the loudest, then a small room.

>>> x = render_knocks(seconds=3.0, seed=7)
>>> x.dtype, x.shape, float(abs(x).max()) <= 1.0
(dtype('float32'), (48000,), True)
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

from .music import in_small_room, plan_pieces

RATE = 16000
KNOCKS_DIR = "_knocks_"


def _thump(rng):
    n = int(rng.uniform(0.03, 0.25) * RATE)
    t = np.arange(n)
    decay = np.exp(-t / (rng.uniform(0.01, 0.08) * RATE))
    low = butter(2, rng.uniform(150, 600), fs=RATE, output="sos")
    body = np.sin(2 * np.pi * rng.uniform(25, 180) * t / RATE + rng.uniform(0, 2 * np.pi))
    return (body + 0.5 * sosfilt(low, rng.standard_normal(n))) * decay


def _click(rng):
    n = max(2, int(rng.uniform(0.001, 0.006) * RATE))
    return rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 4))


def _knock(rng):
    n = int(rng.uniform(0.04, 0.2) * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for _ in range(int(rng.integers(2, 4))):
        out += (rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(200, 2500) * t)
                * np.exp(-t / rng.uniform(0.005, 0.04)))
    click = _click(rng)
    out[:len(click)] += 0.5 * click[:n]
    return out


def _rub(rng):
    n = int(rng.uniform(0.05, 0.3) * RATE)
    lo = rng.uniform(80, 1500)
    band = butter(2, [lo, min(lo * rng.uniform(1.5, 4.0), 7000)], btype="band", fs=RATE,
                  output="sos")
    return sosfilt(band, rng.standard_normal(n)) * np.hanning(n)


_EVENTS = ((_thump, 0.45), (_knock, 0.2), (_click, 0.2), (_rub, 0.15))


def render_knocks(seconds: float, seed: int, peak_db: float = -3.0) -> np.ndarray:
    """``seconds`` of 16 kHz mono knocks (float32, its peak at ``peak_db``); see the module."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    out = rng.standard_normal(n) * 10 ** (rng.uniform(-70, -50) / 20)
    makers, odds = zip(*_EVENTS)
    t = rng.exponential(0.8)
    while t < seconds:
        for _ in range(int(rng.integers(1, 5))):
            sound = makers[rng.choice(len(makers), p=odds)](rng)
            sound *= 10 ** (-rng.uniform(0, 32) / 20) / (np.max(np.abs(sound)) or 1.0)
            i = int(t * RATE)
            sound = sound[:max(0, n - i)]
            out[i:i + len(sound)] += sound
            t += rng.uniform(0.02, 0.3)
        t += rng.exponential(0.8)
    return in_small_room(out, rng, 0.3, (0.02, 0.1), spread=0.3, direct=1.0, peak_db=peak_db)


def plan_knocks(minutes: float, seed: int) -> list[dict]:
    """The recordings for ``minutes`` of knocks, as :func:`training.music.plan_music` plans
    pieces (``knocks-SEED_nohash_K.wav``, 30-90 s, peaks at -20..-3 dBFS).

    >>> [p["name"] for p in plan_knocks(1.0, seed=1)][:1]
    ['knocks-1_nohash_0.wav']
    """
    return plan_pieces("knocks", minutes, seed, salt=0x6B6E)
