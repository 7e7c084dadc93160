"""kwsd: an always-listening "stop" keyword spotter for the Raspberry Pi.

The pure core (no I/O, no threads, no clock):

* :mod:`kwsd.profiles`  -- feature profiles: everything that defines a model's input.
* :mod:`kwsd.frontend`  -- streaming front end: blocks of device audio -> feature windows.
* :mod:`kwsd.detector`  -- smoothing, threshold and refractory period -> detections.

At the edges:

* :mod:`kwsd.model`     -- loading a ``.tflite`` file (with its embedded metadata).
* :mod:`kwsd.audiofile` -- reading WAV/FLAC files.
* :mod:`kwsd.detect`    -- ``kwsd detect``: files through the same path as the daemon.
"""

__version__ = "0.1.0"
