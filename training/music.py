"""Synthetic instrumental music: negatives for training, and a development signal.

A model that has never heard music can fire on it: a note's attack, a snare's noise burst
and a pluck's decay make "s", "t" and "o"-like shapes. ``../shared/data`` holds no music,
so ``kwsd-train synth --music-minutes N`` writes pieces made here into the corpus's
``_music_/`` folder, where ``kwsd-train prepare --synthetic`` cuts them into negative
windows (training only, like all synthetic audio) and ``kwsd-train evaluate
--synthetic-speech`` counts false accepts on them under the language ``music``. Synthetic
music is never a claim about real music.

Each piece draws a tempo (70-160 bpm), a key (major or minor), a four-chord progression, a
lead (sine, saw, square, organ or plucked string), an optional pad, a bass line and, most
of the time, drums (kick, snare, hi-hat), then a short noise reverb and a level from -20 to
-3 dBFS. A piece depends only on its seed, so a corpus is the same on every machine.

>>> from training.music import render_piece
>>> x = render_piece(seconds=2.0, seed=7)
>>> x.dtype, x.shape, float(abs(x).max()) <= 1.0
(dtype('float32'), (32000,), True)
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, lfilter

RATE = 16000
MUSIC_DIR = "_music_"
_MAJOR, _MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)


def _midi_hz(note):
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def _envelope(n, attack, decay, sustain, release):
    t = np.arange(n) / RATE
    env = np.minimum(t / attack, 1.0)
    env *= np.where(t > attack, sustain + (1 - sustain) * np.exp(-(t - attack) / decay), 1.0)
    tail = min(n, int(release * RATE))
    if tail:
        env[n - tail:] *= np.linspace(1.0, 0.0, tail)
    return env


def _tone(hz, n, kind, rng):
    vibrato = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4.0, 6.5) * np.arange(n) / RATE)
    phase = rng.uniform(0, 2 * np.pi) + np.cumsum(2 * np.pi * hz * vibrato / RATE)
    if kind == "sine":
        return np.sin(phase)
    if kind == "saw":
        return 2 * ((phase / (2 * np.pi)) % 1.0) - 1
    if kind == "square":
        return 0.6 * np.sign(np.sin(phase))
    if kind == "organ":
        return sum(np.sin(k * phase) / k for k in (1, 2, 3, 4)) / 2
    # "pluck": a Karplus-Strong string, the comb filter run by lfilter
    period = max(2, int(RATE / hz))
    burst = np.zeros(n)
    burst[:period] = rng.uniform(-1, 1, min(period, n))
    denominator = np.zeros(period + 2)
    denominator[0] = 1.0
    denominator[period:] = -rng.uniform(0.985, 0.998) / 2
    return lfilter([1.0], denominator, burst)


def _drum(kind, n, rng):
    t = np.arange(n) / RATE
    if kind == "kick":
        return np.sin(np.cumsum(2 * np.pi * (50 + 100 * np.exp(-30 * t)) / RATE)) * np.exp(-12 * t)
    noise = rng.normal(0, 1, n)
    if kind == "snare":
        return (0.7 * noise + 0.5 * np.sin(2 * np.pi * 190 * t)) * np.exp(-25 * t)
    b, a = butter(2, 6000 / (RATE / 2), "high")                      # hi-hat
    return 0.5 * lfilter(b, a, noise) * np.exp(-60 * t)


def _add(out, start, sound):
    """Mix ``sound`` into ``out`` from sample ``start`` on, cut at the end of ``out``."""
    sound = sound[:max(0, len(out) - start)]
    out[start:start + len(sound)] += sound


def render_piece(seconds: float, seed: int, peak_db: float = -3.0) -> np.ndarray:
    """One piece of ``seconds`` of 16 kHz mono music (float32, its peak at ``peak_db``)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * RATE))
    out = np.zeros(n)                          # notes still ringing at the end are cut
    beat = 60.0 / rng.uniform(70, 160)
    root = int(rng.integers(45, 57))
    scale = _MAJOR if rng.random() < 0.6 else _MINOR
    lead = str(rng.choice(["sine", "saw", "square", "organ", "pluck"]))
    pad = rng.choice(["sine", "organ", "saw", ""])
    drums = rng.random() < 0.7
    progression = rng.integers(0, 7, 4)
    bar_len = 4 * beat
    for bar, start in enumerate(np.arange(0.0, seconds, bar_len)):
        i, degree = int(start * RATE), int(progression[bar % 4])
        if pad:
            length = int(bar_len * RATE)
            for k in (0, 2, 4):
                step = degree + k
                note = root + 12 + scale[step % 7] + 12 * (step // 7)
                _add(out, i, 0.12 * _tone(_midi_hz(note), length, pad, rng)
                     * _envelope(length, 0.2, 1.0, 0.7, 0.3))
        for k in range(4):                                          # bass on every beat
            j, length = i + int(k * beat * RATE), int(0.9 * beat * RATE)
            _add(out, j, 0.25 * _tone(_midi_hz(root - 12 + scale[degree]), length, "sine", rng)
                 * _envelope(length, 0.005, 0.2, 0.5, 0.05))
        t = 0.0
        while t < bar_len:                                          # the melody
            duration = beat * float(rng.choice([0.5, 0.5, 1, 1, 1.5, 2]))
            note = root + 24 + scale[int(rng.integers(0, 7))] + (12 if rng.random() < 0.2 else 0)
            j, length = i + int(t * RATE), int(duration * RATE)
            if rng.random() < 0.85:
                _add(out, j, 0.2 * _tone(_midi_hz(note), length, lead, rng)
                     * _envelope(length, 0.01, duration / 2, 0.5, min(0.05, duration / 3)))
            t += duration
        if drums:
            for k in range(8):
                j, length = i + int(k * beat / 2 * RATE), int(0.3 * RATE)
                _add(out, j, 0.15 * _drum("hat", length, rng))
                if k % 4 == 0:
                    _add(out, j, 0.5 * _drum("kick", length, rng))
                elif k % 4 == 2:
                    _add(out, j, 0.3 * _drum("snare", length, rng))
    return in_small_room(out, rng, 0.4, (0.03, 0.12), spread=1.0, direct=8.0, peak_db=peak_db)


def in_small_room(x, rng, length_s, decay_s, spread, direct, peak_db):
    """``x`` through a small room (``length_s`` of noise with ``spread``, decaying over a time
    drawn from ``decay_s``, after a ``direct`` path), cut to its length, its peak set to
    ``peak_db`` dBFS; float32."""
    m = int(length_s * RATE)
    room = rng.normal(0, spread, m) * np.exp(-np.arange(m) / (RATE * rng.uniform(*decay_s)))
    room[0] = direct
    out = np.convolve(x, room)[:len(x)]
    peak = np.max(np.abs(out)) or 1.0
    return (out / peak * 10 ** (peak_db / 20)).astype(np.float32)


def plan_music(minutes: float, seed: int) -> list[dict]:
    """The pieces for ``minutes`` of music: ``{"name", "seconds", "seed", "peak_db"}`` each,
    30-90 s long (the last one what is left), their peaks at -20..-3 dBFS. The names
    (``music-SEED_nohash_K.wav``) make each corpus's pieces one "speaker" for the trainer's
    split.

    >>> [(p["name"], p["seconds"]) for p in plan_music(2.5, seed=1)]
    [('music-1_nohash_0.wav', 74.17), ('music-1_nohash_1.wav', 67.46), ('music-1_nohash_2.wav', 8.37)]
    """
    return plan_pieces("music", minutes, seed, salt=0x6D75)


def plan_pieces(prefix: str, minutes: float, seed: int, salt: int) -> list[dict]:
    """``minutes`` of generated audio cut into 30-90 s pieces named ``PREFIX-SEED_nohash_K.wav``
    (see :func:`plan_music`); ``salt`` keeps each generator's draws its own."""
    rng = np.random.default_rng([seed, salt])
    plan, total = [], 0.0
    while total < minutes * 60 - 5:
        seconds = round(float(min(rng.uniform(30, 90), minutes * 60 - total)), 2)
        plan.append({"name": f"{prefix}-{seed}_nohash_{len(plan)}.wav", "seconds": seconds,
                     "seed": int(rng.integers(2**31)), "peak_db": float(rng.uniform(-20, -3))})
        total += seconds
    return plan
