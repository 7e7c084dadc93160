"""``kwsd detect``: run audio files through the daemon's own decision path.

Each file is read, mixed down, and fed block by block (1024 frames at its own rate, as a
microphone would deliver it) through :class:`~kwsd.spotter.Spotter`: the same front end,
model and detector as ``kwsd run``. What you measure offline is what the Pi does.

    kwsd detect recording.wav
    kwsd detect --json a.wav b.flac
    kwsd detect --json --scores --model m.tflite --threshold 0.7 a.wav

With ``--json`` each line is one object::

    {"event": "detection", "file": "a.wav", "time": 1.4, "keyword": "stop", "score": 0.93}
    {"event": "score", "file": "a.wav", "time": 1.0, "score": 0.02, "smoothed": 0.02}

``time`` is seconds from the file's start at which the decision was made (the end of the
window scored). A file shorter than one window is padded with silence to one window, so a
one-second corpus clip is scored once, as a whole.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from .audiofile import read_audio
from .errors import EX_NOINPUT, AudioFileError
from .listen import format_bar
from .spotter import Spotter

BLOCK_FRAMES = 1024


def detect_file(path, model, settings, on_event, channel="mix"):
    """Stream one file through a fresh :class:`Spotter`; call ``on_event(event)`` per event.

    Raises :class:`~kwsd.errors.AudioFileError` if the file cannot be read.
    """
    samples, rate = read_audio(path)
    if channel != "mix" and int(channel) >= samples.shape[1]:
        raise AudioFileError(path, f"has {samples.shape[1]} channel(s); channel {channel} asked for")
    detect_samples(samples, rate, model, settings, on_event, channel)


def detect_samples(samples, rate, model, settings, on_event, channel="mix"):
    """:func:`detect_file` for audio already in memory: ``(frames,)`` or
    ``(frames, channels)`` samples at ``rate``."""
    samples = samples.reshape(samples.shape[0], -1)
    window = int(np.ceil(model.profile.window_s * rate))
    if samples.shape[0] < window:
        pad = np.zeros((window - samples.shape[0], samples.shape[1]), dtype=samples.dtype)
        samples = np.concatenate([samples, pad])
    spotter = Spotter(model, rate, settings, channel)
    for start in range(0, samples.shape[0], BLOCK_FRAMES):
        for event in spotter.process(samples[start:start + BLOCK_FRAMES]):
            on_event(event)


def run_detect(files, model, settings, as_json=False, scores=False, out=sys.stdout, err=sys.stderr):
    """The ``kwsd detect`` command body; returns the exit status.

    Unreadable files are reported on ``err`` and skipped; the status is
    :data:`~kwsd.errors.EX_NOINPUT` if any was, after the readable ones are done.
    """
    status = 0
    for path in files:
        def emit(event, path=path):
            if event.kind == "score" and not scores:
                return
            if as_json:
                obj = {"event": event.kind, "file": str(path), "time": event.time}
                if event.kind == "detection":
                    obj.update(keyword=model.keyword, score=round(event.score, 4))
                else:
                    obj.update(score=round(event.score, 4), smoothed=round(event.smoothed, 4))
                out.write(json.dumps(obj) + "\n")
            elif event.kind == "detection":
                out.write(f"{path}\t{event.time:8.2f} s\t{model.keyword}\tscore {event.score:.3f}\n")
            else:
                out.write(f"{path}\t" + format_bar(event.time, event.score, event.smoothed, False,
                                                   threshold=settings.threshold, color=False) + "\n")
        try:
            detect_file(path, model, settings, emit)
        except AudioFileError as exc:
            err.write(f"kwsd detect: {exc}\n")
            status = EX_NOINPUT
        out.flush()
    return status
