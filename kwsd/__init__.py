"""kwsd: an always-listening "stop" keyword spotter for the Raspberry Pi.

The pure core (no I/O, no threads, no clock):

* :mod:`kwsd.profiles`  -- feature profiles: everything that defines a model's input.
* :mod:`kwsd.frontend`  -- streaming front end: blocks of device audio -> feature windows.
* :mod:`kwsd.detector`  -- smoothing, threshold and refractory period -> detections.
* :mod:`kwsd.pipeline`  -- the one composition of the three (feature side, decision side),
  shared by ``kwsd detect`` (:mod:`kwsd.spotter`, one thread) and the daemon (two threads).

At the edges:

* :mod:`kwsd.model`, :mod:`kwsd.metadata` -- loading a ``.tflite`` file with its metadata.
* :mod:`kwsd.audiofile` -- reading WAV/FLAC files block by block.
* :mod:`kwsd.detect`    -- ``kwsd detect``: files through the same path as the daemon.
* :mod:`kwsd.config`    -- the YAML config as frozen dataclasses.
* :mod:`kwsd.sources`, :mod:`kwsd.capture` -- audio sources (device, file, array).
* :mod:`kwsd.workers`, :mod:`kwsd.model_supervisor`, :mod:`kwsd.supervisor`,
  :mod:`kwsd.outputs`, :mod:`kwsd.status`, :mod:`kwsd.service` -- the daemon, one job each.
* :mod:`kwsd.room`, :mod:`kwsd.captures`, :mod:`kwsd.meter` -- learning from the room.
"""

__version__ = "0.1.0"
