"""``kwsd listen``: watch the model's scores live, one bar per hop, detections highlighted.

It runs the daemon itself (:class:`kwsd.service.Service`: capture, feature thread,
decision thread) with a bar printer as an observer of the live decision path, and the
outputs off unless ``--actions`` is given::

      3.40 s  smoothed 0.012 |                            :           |  raw 0.012
      3.50 s  smoothed 0.874 |###################################.....|  raw 0.874  STOP

>>> print(format_bar(3.5, 0.874, 0.874, True, width=10, color=False))
   3.50 s  smoothed 0.874 |#########.|  raw 0.874  STOP
"""

from __future__ import annotations

import sys

BOLD_RED, RESET = "\033[1;31m", "\033[0m"


def format_bar(t, score, smoothed, detected, width=40, threshold=None, color=True):
    """One line: stream time; the smoothed score, which the detector compares with the
    threshold, as a number and a bar (``:`` marks the threshold); the model's raw score.

    >>> format_bar(3.7, 0.9, 0.75, False, width=10, threshold=0.85, color=False)
    '   3.70 s  smoothed 0.750 |########: |  raw 0.900'
    """
    filled = int(round(smoothed * width))
    bar = "#" * filled + "." * (width - filled) if detected else \
        "#" * filled + " " * (width - filled)
    if threshold is not None and not detected:
        pos = min(width - 1, int(threshold * width))
        if bar[pos] == " ":
            bar = bar[:pos] + ":" + bar[pos + 1:]
    line = f"{t:7.2f} s  smoothed {smoothed:.3f} |{bar}|  raw {score:.3f}"
    if detected:
        line += "  STOP"
        if color:
            line = BOLD_RED + line + RESET
    return line


class BarPrinter:
    """An observer of :class:`~kwsd.pipeline.Hop` records printing :func:`format_bar` for the
    live path."""

    def __init__(self, out=None, threshold=None, width=40):
        self.out = out or sys.stdout
        self.threshold = threshold      # a number, or a callable returning the current one
        self.width = width
        self.color = hasattr(self.out, "isatty") and self.out.isatty()

    def __call__(self, hop):
        """Print one hop."""
        if hop.role != "live":
            return
        thr = self.threshold() if callable(self.threshold) else self.threshold
        self.out.write(format_bar(hop.time, hop.score, hop.smoothed, hop.detection is not None,
                                  self.width, thr, self.color) + "\n")
        self.out.flush()


def run_listen(cfg, config_path=None, input_file=None, actions=False):
    """The ``kwsd listen`` body: the daemon with a bar printer; returns its exit status."""
    from kwsd.service import Service
    from kwsd.systemd import Notifier

    if input_file is None:
        _check_microphone(cfg.audio.device)
    printer = BarPrinter()
    service = Service(cfg, config_path=config_path, input_file=input_file,
                      notifier=Notifier(env={}), actions=actions)
    service.pipeline.observers.append(printer)
    printer.threshold = lambda: service.models.generation.live.settings.threshold
    return service.run()


def _check_microphone(device):
    """An interactive command does not wait for a microphone: no input device, exit with
    the hint ``kwsd devices`` gives (the service, in contrast, keeps retrying)."""
    from kwsd.capture import find_device
    from kwsd.errors import UnavailableError

    try:
        find_device(device)
    except LookupError as exc:
        raise UnavailableError(f"{exc}: is a microphone plugged in? `kwsd "
                               "devices` lists the input devices (`arecord -l` lists ALSA's "
                               "view); choose one with --device") from None
