"""``kwsd detect``: run audio files through the daemon's own decision path.

Each file is read block by block (1024 frames at its own rate, as a microphone would
deliver it) through :class:`~kwsd.spotter.Spotter`, which runs the daemon's own
:class:`~kwsd.pipeline.Pipeline`: the same front end, model and detector as ``kwsd run``.
What you measure offline is what the Pi does.

    kwsd detect recording.wav
    kwsd detect --json a.wav b.flac
    kwsd detect --json --scores --model m.tflite --threshold 0.7 a.wav

With ``--json`` each line is one object::

    {"event": "detection", "file": "a.wav", "time": 1.4, "keyword": "stop", "score": 0.93}
    {"event": "score", "file": "a.wav", "time": 1.0, "score": 0.02, "smoothed": 0.02}

``time`` is seconds from the file's start at which the decision was made (the end of the
window scored). A file shorter than one window is preceded by silence up to one window, as
if the microphone had been quiet before it: a one-second corpus clip is scored once, as a
whole, by a model with a one-second window, and a model with a longer window hears the clip
end where the file ends, as a live stream would, never followed by silence that no microphone
records.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys

import numpy as np

from .audiofile import AudioFile
from .errors import EX_NOINPUT, AudioFileError
from .listen import format_bar
from .spotter import Spotter

BLOCK_FRAMES = 1024


def detect_file(path, model, settings, on_event, channel="mix"):
    """Stream one file through a fresh :class:`Spotter`; call ``on_event(event)`` per event.

    The file is read block by block: memory does not grow with its length.
    Raises :class:`~kwsd.errors.AudioFileError` if the file cannot be read. Returns the
    file's length in seconds.
    """
    with AudioFile(path) as audio:
        if channel != "mix" and int(channel) >= audio.channels:
            raise AudioFileError(path, f"has {audio.channels} channel(s); channel {channel} "
                                 "asked for")
        _stream(audio.blocks(BLOCK_FRAMES), audio.rate, audio.channels, model, settings,
                on_event, channel)
        return audio.duration_s


def detect_samples(samples, rate, model, settings, on_event, channel="mix"):
    """:func:`detect_file` for audio already in memory: ``(frames,)`` or
    ``(frames, channels)`` samples at ``rate``."""
    samples = samples.reshape(samples.shape[0], -1)
    blocks = (samples[i:i + BLOCK_FRAMES] for i in range(0, samples.shape[0], BLOCK_FRAMES))
    _stream(blocks, rate, samples.shape[1], model, settings, on_event, channel)


def _stream(blocks, rate, channels, model, settings, on_event, channel):
    """Blocks through a :class:`Spotter`. Audio shorter than one window is preceded by
    silence up to one window, as if the microphone had been quiet before it, and its events'
    times are counted from the audio's own start."""
    window = int(np.ceil(model.profile.window_s * rate))
    blocks = iter(blocks)
    head, frames = [], 0
    for block in blocks:  # hold back up to one window: is the audio shorter than that?
        head.append(block)
        frames += block.shape[0]
        if frames >= window:
            break
    lead = max(0, window - frames)
    spotter = Spotter(model, rate, settings, channel)
    if lead:
        head.insert(0, np.zeros((lead, channels), np.float32))

    def emit(event):
        on_event(dataclasses.replace(event, time=round(event.time - lead / rate, 6)) if lead
                 else event)
    for block in itertools.chain(head, blocks):
        for event in spotter.process(block):
            emit(event)
    for event in spotter.finish():
        emit(event)


def run_detect(files, model, settings, as_json=False, scores=False, out=sys.stdout, err=sys.stderr):
    """The ``kwsd detect`` command body; returns the exit status.

    Unreadable files are reported on ``err`` and skipped; the status is
    :data:`~kwsd.errors.EX_NOINPUT` if any was, after the readable ones are done.
    """
    status = 0
    for path in files:
        detections = []

        def emit(event, path=path, detections=detections):
            if event.kind == "detection":
                detections.append(event)
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
            seconds = detect_file(path, model, settings, emit)
            if not detections and not as_json:
                out.write(f"0 detections in {path} ({seconds:.1f} s)\n")
        except AudioFileError as exc:
            err.write(f"kwsd detect: {exc}\n")
            status = EX_NOINPUT
        out.flush()
    return status
