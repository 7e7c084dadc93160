"""Errors a user can cause, and the exit status each one gives.

Every error names the file, key or value at fault and what was expected; the CLI prints
the message (never a traceback) and exits with the status below (sysexits.h values, so
systemd's ``RestartPreventExitStatus=78`` stops restarting on a bad config).
"""

EX_USAGE = 64      # bad command line
EX_DATAERR = 65    # a model file that is not a usable kwsd model
EX_NOINPUT = 66    # an audio file that cannot be read
EX_UNAVAILABLE = 69  # a system library (libportaudio) is missing
EX_SOFTWARE = 70   # a bug
EX_IOERR = 74      # audio device trouble that could not be recovered
EX_CONFIG = 78     # a bad configuration file


class KwsdError(Exception):
    """Base class: ``str(err)`` is the whole user-facing message."""

    exit_status = EX_SOFTWARE


class PathError(KwsdError):
    """A problem with one file, folder or URL: ``"<path>: <reason>"``."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # pickled as its two arguments: a worker process hands it back to its parent (the
        # default would call __init__ with the message alone, fail, and hang the pool)
        return type(self), (self.path, self.reason)


class ModelError(PathError):
    """A model file that cannot be used: names the file and the reason.

    >>> str(ModelError("/etc/kwsd/stop.tflite", "not a TFLite flatbuffer"))
    '/etc/kwsd/stop.tflite: not a TFLite flatbuffer'
    """

    exit_status = EX_DATAERR


class AudioFileError(PathError):
    """An audio file that cannot be read."""

    exit_status = EX_NOINPUT


class UnavailableError(KwsdError):
    """A system library or service kwsd needs is missing (e.g. libportaudio2).

    >>> UnavailableError("PortAudio library not found").exit_status
    69
    """

    exit_status = EX_UNAVAILABLE


class ConfigError(KwsdError):
    """A configuration problem; ``key`` is the dotted key path (``actions[1].pin``)."""

    exit_status = EX_CONFIG

    def __init__(self, path, key, reason):
        self.path = str(path) if path else "<config>"
        self.key = key
        self.reason = reason
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + reason)
