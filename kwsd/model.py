"""Loading and running a keyword model (``.tflite``).

The interpreter comes from ``ai_edge_litert`` (LiteRT, the maintained runtime), else
``tflite_runtime``, else ``tensorflow.lite``; the one used is logged and kept in
:attr:`KwsModel.runtime`.

>>> from kwsd.model import load_model
>>> model = load_model("kwsd/models/stop.tflite")                  # doctest: +SKIP
>>> model.keyword, model.profile.name, model.defaults.threshold    # doctest: +SKIP
('stop', 'logmel40', 0.7)

A model is validated as it loads: the file must be a TFLite flatbuffer, its metadata (if
any) well-formed, its input shape and dtype those of its feature profile, its output one
probability, and one test invoke must succeed. Any failure is a
:class:`~kwsd.errors.ModelError` naming the file and the reason.

A model without kwsd metadata (the tutorial's) is accepted when the caller names a profile
or its input shape identifies a built-in one (:func:`kwsd.profiles.profile_for_input_shape`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile

import numpy as np

from .detector import DetectorSettings
from .errors import ModelError
from .files import read_regular_file
from .metadata import FORMAT, is_tflite, read_metadata
from .profiles import FeatureProfile, get_profile, profile_for_input_shape

log = logging.getLogger(__name__)

RUNTIMES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)

#: A model file larger than this is refused (keyword models are tens of kilobytes).
MAX_MODEL_BYTES = 8 << 20

#: The model shipped inside the package: used when no model is configured.
BUNDLED_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "stop.tflite")

# Runtimes that hand the flatbuffer to the interpreter without verifying it: a damaged or
# truncated file can crash the process (seen with tflite-runtime 2.14), so a candidate is
# first opened in a throwaway child process.
UNVERIFIED_RUNTIMES = ("tflite_runtime",)

# Defaults for models that carry none (the tutorial's): its threshold, one score per
# decision, one second between detections.
LEGACY_DEFAULTS = DetectorSettings(threshold=0.5, smoothing=1, refractory_s=1.0, hop_s=0.1)


# The fix for a file that is not (or no longer) a model.
DAMAGED = "; copy the model file again, or make one with `kwsd-train export`"


def interpreter_class(preferred: str | None = None):
    """``(name, Interpreter class)`` of the first importable runtime (or the preferred one).

    Set ``KWSD_TFLITE_RUNTIME=tflite_runtime`` to force one.
    """
    preferred = preferred or os.environ.get("KWSD_TFLITE_RUNTIME") or None
    errors = []
    for name, module in RUNTIMES:
        if preferred and name != preferred:
            continue
        try:
            mod = importlib.import_module(module)
            return name, mod.Interpreter
        except Exception as exc:  # ImportError, or a runtime built for another numpy
            errors.append(f"{name}: {exc}")
    raise ModelError("<runtime>", "no TFLite runtime could be imported ("
                     + "; ".join(errors) + "); install ai-edge-litert")


class KwsModel:
    """A loaded, validated keyword model. Use :func:`load_model` to make one.

    Attributes:
        path: where it came from. profile: its :class:`~kwsd.profiles.FeatureProfile`.
        keyword: the word it spots. metadata: the embedded kwsd metadata (``{}`` if none).
        defaults: its recommended :class:`~kwsd.detector.DetectorSettings`.
        runtime: the TFLite runtime that runs it.
    """

    def __init__(self, path, interpreter, runtime, profile, metadata):
        self.path = str(path)
        self.runtime = runtime
        self.profile = profile
        self.metadata = metadata
        self.keyword = metadata.get("keyword", "stop")
        self.defaults = LEGACY_DEFAULTS
        if "detector" in metadata:
            self.defaults = DetectorSettings.from_dict(metadata["detector"])
        self._interp = interpreter
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype, self._out_dtype = inp["dtype"], out["dtype"]
        self._in_q, self._out_q = inp["quantization"], out["quantization"]
        self.quantized = self._in_dtype != np.float32
        if self.quantized:          # per-hop scratch: quantising allocates nothing
            info = np.iinfo(self._in_dtype)
            self._in_range = (np.float32(info.min), np.float32(info.max))
            self._q_float = np.empty(profile.input_shape, np.float32)
            self._q_input = np.empty(profile.input_shape, self._in_dtype)

    def score(self, features: np.ndarray) -> float:
        """Probability (0..1) of the keyword in one window of ``[frames, coefs]`` features."""
        x = self.profile.to_tensor(features)
        if self.quantized:          # round(x / scale + zero), clipped to the dtype's range
            scale, zero = self._in_q
            q = self._q_float
            np.divide(x, scale, out=q)
            q += zero
            np.rint(q, out=q)                            # = np.round: half to even
            np.maximum(q, self._in_range[0], out=q)
            np.minimum(q, self._in_range[1], out=q)
            x = self._q_input
            np.copyto(x, q, casting="unsafe")
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index).reshape(-1)[-1]
        if self._out_dtype != np.float32:
            scale, zero = self._out_q
            y = (float(y) - zero) * scale
        return float(min(1.0, max(0.0, y)))

    def describe(self) -> str:
        """One line for logs: file, keyword, profile, dtype, runtime."""
        kind = "int8" if self.quantized else "float"
        return (f"{os.path.basename(self.path)} (keyword {self.keyword!r}, profile "
                f"{self.profile.name}, {kind}, runtime {self.runtime})")


def load_model(path, profile: FeatureProfile | str | None = None, runtime: str | None = None) -> KwsModel:
    """Read, validate and test-invoke a model file (see module docs).

    Args:
        path: the ``.tflite`` file. It is read once, so a rename during loading is harmless;
            it must be a regular file of at most :data:`MAX_MODEL_BYTES` (opened without
            blocking: a FIFO there is refused, not waited on).
        profile: a profile (or its name) for models without metadata; ignored otherwise
            unless it disagrees with the metadata, which is an error.
        runtime: force ``"ai_edge_litert"``, ``"tflite_runtime"`` or ``"tensorflow"``.
    """
    path = os.fspath(path)
    try:
        data = read_regular_file(path, MAX_MODEL_BYTES, "model file")
    except OSError as exc:
        raise ModelError(path, f"cannot read the model file ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ModelError(path, f"cannot use the model file: {exc}") from None
    return load_model_bytes(data, path, profile, runtime)


def load_model_bytes(data: bytes, path="<bytes>", profile=None, runtime=None) -> KwsModel:
    """:func:`load_model` for bytes already in memory (``path`` is used in messages)."""
    if not data:
        raise ModelError(path, "the model file is empty")
    if not is_tflite(data):
        raise ModelError(path, "not a TFLite model (no 'TFL3' flatbuffer identifier)" + DAMAGED)
    name, Interpreter = interpreter_class(runtime)
    if name in UNVERIFIED_RUNTIMES:
        _probe_in_subprocess(data, path, name)
    try:
        with _runtime_stderr_to_log():
            interp = Interpreter(model_content=bytes(data), num_threads=1)
            interp.allocate_tensors()
    except Exception as exc:
        raise ModelError(path, f"the TFLite runtime rejected it ({_short(exc)})" + DAMAGED) from None
    try:
        metadata = read_metadata(data) or {}
    except Exception as exc:
        raise ModelError(path, f"its kwsd metadata is unreadable ({exc})") from None
    if metadata and metadata.get("format") != FORMAT:
        raise ModelError(path, f"metadata format {metadata.get('format')!r} is not {FORMAT!r}")
    inputs, outputs = interp.get_input_details(), interp.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(path, f"expected 1 input and 1 output tensor, found {len(inputs)} and {len(outputs)}")
    in_shape = tuple(int(s) for s in inputs[0]["shape"])

    if isinstance(profile, str):
        profile = get_profile(profile)
    if "profile" in metadata:
        try:
            embedded = FeatureProfile.from_dict(metadata["profile"])
        except (TypeError, ValueError) as exc:
            raise ModelError(path, f"its feature profile is invalid ({exc})") from None
        if profile is not None and profile != embedded:
            raise ModelError(path, f"it was trained on profile {embedded.name!r}, not {profile.name!r}")
        profile = embedded
    if profile is None:
        profile = profile_for_input_shape(in_shape)
        if profile is None:
            raise ModelError(path, f"no kwsd metadata and input shape {list(in_shape)} matches no "
                                   "known feature profile; name one with --profile")
    if in_shape != profile.input_shape:
        raise ModelError(path, f"input shape {list(in_shape)} does not match profile "
                               f"{profile.name!r}, which needs {list(profile.input_shape)}")
    for what, detail in (("input", inputs[0]), ("output", outputs[0])):
        if detail["dtype"] not in (np.float32, np.int8, np.uint8):
            raise ModelError(path, f"{what} dtype {np.dtype(detail['dtype']).name} is not float32, int8 or uint8")
        if detail["dtype"] != np.float32 and not detail["quantization"][0]:
            raise ModelError(path, f"quantised {what} has no quantisation scale")
    if int(np.prod(outputs[0]["shape"])) not in (1, 2):
        raise ModelError(path, f"output shape {list(outputs[0]['shape'])} is not one keyword "
                               "probability ([1, 1], or [1, 2] with the keyword last)")

    try:
        model = KwsModel(path, interp, name, profile, metadata)
    except (TypeError, ValueError) as exc:
        raise ModelError(path, f"its detector defaults are invalid ({exc})") from None
    try:
        probe = model.score(np.zeros((profile.frames_per_window, profile.ncoef), np.float32))
    except Exception as exc:
        raise ModelError(path, f"test invoke failed ({_short(exc)})") from None
    if not np.isfinite(probe):
        raise ModelError(path, "test invoke produced a non-finite score")
    log.info("loaded model %s", model.describe())
    return model


# The runtime's C++ logger writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
# straight to file descriptor 2, once per process, and neither LiteRT nor tflite-runtime has a
# Python setting or environment variable that silences it (TF_CPP_MIN_LOG_LEVEL does not).
# Turning the delegate off would silence it too, but makes the bundled model 6x slower; instead
# fd 2 is caught while an interpreter is created: the runtime's INFO lines go to the debug
# log, anything else (from the runtime or another thread) is passed on to stderr unchanged.
_runtime_banner_seen = False


@contextlib.contextmanager
def _runtime_stderr_to_log():
    """Catch fd 2 while the runtime creates an interpreter (see above)."""
    global _runtime_banner_seen
    if _runtime_banner_seen:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        saved = os.dup(2)
    except OSError:            # no fd 2 at all: nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", "replace")
    passed = []
    for line in text.splitlines(keepends=True):
        if line.startswith("INFO: "):
            _runtime_banner_seen = _runtime_banner_seen or "delegate" in line
            log.debug("TFLite runtime: %s", line[6:].strip())
        else:
            passed.append(line)
    if passed:
        os.write(2, "".join(passed).encode("utf-8", "replace"))


def _probe_in_subprocess(data: bytes, path, runtime: str):
    """Open ``data`` with ``runtime`` in a child process; ModelError if the child dies."""
    import subprocess

    code = ("import sys; from kwsd.model import interpreter_class; "
            f"i = interpreter_class({runtime!r})[1](model_content=sys.stdin.buffer.read()); "
            "i.allocate_tensors(); i.invoke()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.run([sys.executable, "-c", code], input=bytes(data), capture_output=True,
                           env=env, timeout=60)
    if child.returncode < 0:
        raise ModelError(path, f"the TFLite runtime crashed reading it (signal {-child.returncode}): "
                               "the file is damaged or truncated" + DAMAGED)


def _short(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
