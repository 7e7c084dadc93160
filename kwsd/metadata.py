"""kwsd metadata inside the ``.tflite`` file.

A kwsd model is one file: the TFLite flatbuffer carries a ``Metadata`` entry named
``"kwsd"`` (the schema's own place for named extra data, the mechanism TFLite Support uses
for its metadata) whose buffer holds UTF-8 JSON::

    {"format": "kwsd-model/1", "keyword": "stop",
     "profile": {...FeatureProfile.to_dict()...},
     "detector": {"threshold": 0.8, "smoothing": 3, "refractory_s": 1.0, "hop_s": 0.1},
     "provenance": {"data": ..., "date": ..., "git_commit": ..., "command": ..., "metrics": ...}}

Because model and metadata are one file, replacing a model is one atomic rename
(``mv new.tflite /etc/kwsd/stop.tflite``): the daemon never sees a model with another
model's threshold. TFLite interpreters ignore metadata entries they don't know.

>>> from kwsd.metadata import read_metadata
>>> read_metadata(open("kwsd/models/stop.tflite", "rb").read())["keyword"]   # doctest: +SKIP
'stop'

Reading needs only the ``flatbuffers`` package (a dependency of every TFLite runtime);
writing (training side) uses the TFLite schema's object API shipped with ai-edge-litert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

METADATA_NAME = "kwsd"
FORMAT = "kwsd-model/1"
_FILE_ID = b"TFL3"
# vtable slots (field index) in the TFLite schema
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA = 0


def is_tflite(data: bytes) -> bool:
    """True when ``data`` starts like a TFLite flatbuffer (identifier ``TFL3``)."""
    return len(data) >= 8 and data[4:8] == _FILE_ID


def _field(tab: Table, index: int) -> int:
    return tab.Offset(4 + 2 * index)


def _vector_table(tab: Table, field: int, i: int) -> Table:
    o = _field(tab, field)
    x = tab.Vector(o) + i * 4
    return Table(tab.Bytes, tab.Indirect(x))


def read_metadata(data: bytes, name: str = METADATA_NAME):
    """The JSON metadata dict stored under ``name``, or None when the model has none.

    Raises ``ValueError`` when the entry exists but is not valid JSON object text.
    """
    buf = bytearray(data) if not isinstance(data, (bytearray, memoryview)) else data
    root = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    o = _field(root, _MODEL_METADATA)
    if not o:
        return None
    for i in range(root.VectorLen(o)):
        entry = _vector_table(root, _MODEL_METADATA, i)
        no = _field(entry, _METADATA_NAME)
        if not no or entry.String(no + entry.Pos).decode("utf-8", "replace") != name:
            continue
        bo = _field(entry, _METADATA_BUFFER)
        index = entry.Get(N.Uint32Flags, bo + entry.Pos) if bo else 0
        buffer = _vector_table(root, _MODEL_BUFFERS, index)
        do = _field(buffer, _BUFFER_DATA)
        if not do:
            raise ValueError(f"metadata {name!r} points at an empty buffer")
        start, length = buffer.Vector(do), buffer.VectorLen(do)
        value = json.loads(bytes(buf[start:start + length]).decode("utf-8"))
        if not isinstance(value, dict):
            raise ValueError(f"metadata {name!r} is not a JSON object")
        return value
    return None


def tflite_schema():
    """The TFLite schema's object API, shipped with ai-edge-litert (writing needs it)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - tflite-runtime installs, which only read
        raise ImportError("writing kwsd metadata needs ai-edge-litert "
                          "(pip install ai-edge-litert)") from None
    return schema


def embed_metadata(data: bytes, metadata: dict, name: str = METADATA_NAME) -> bytes:
    """A copy of the TFLite model ``data`` with ``metadata`` stored under ``name``
    (replacing an earlier entry of that name).

    >>> # model = embed_metadata(open("m.tflite", "rb").read(), {"keyword": "stop"})
    """
    import numpy as np

    schema = tflite_schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(data), 0))
    payload = json.dumps(metadata, sort_keys=True).encode("utf-8")
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, dtype=np.uint8)
    model.buffers = list(model.buffers or [])
    earlier = [m for m in (model.metadata or []) if _decode(m.name) == name]
    if earlier:                   # a rewrite reuses its buffer, so the file does not grow
        model.buffers[earlier[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata = list(model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(data) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_ID)
    return bytes(builder.Output())


def _decode(s):
    return s.decode("utf-8") if isinstance(s, (bytes, bytearray)) else s


@dataclass(frozen=True)
class DetTable:
    """The model's held-out DET table (metadata key ``det_table``, written by the trainer):
    for each threshold, false accepts per hour on ``hours`` of held-out audio with no
    keyword, and recall on ``clips`` held-out keyword clips.

    >>> t = DetTable.from_metadata({"det_table": {"hours": 2.0, "clips": 40, "rows": [
    ...     [0.5, 3.0, 0.98], [0.7, 0.5, 0.95], [0.9, 0.0, 0.80]]}})
    >>> t.threshold_for(0.5), t.threshold_for(0.1)
    (0.7, 0.9)
    """

    hours: float | None
    clips: int | None
    rows: tuple          # ((threshold, false accepts/hour, recall), ...) by threshold; None:
                         # not measured

    @classmethod
    def from_metadata(cls, metadata: dict | None) -> "DetTable | None":
        """The table in a model's kwsd metadata; None when it has none. Raises
        ``ValueError`` naming what is wrong with a malformed one."""
        d = (metadata or {}).get("det_table")
        if d is None:
            return None
        def num(x, kind=float):
            return None if x is None else kind(x)

        try:
            hours, clips = num(d["hours"]), num(d["clips"], int)
            rows = tuple(sorted(((float(t), num(fa), num(r)) for t, fa, r in d["rows"]),
                                key=lambda row: row[0]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"det_table is malformed ({exc!s}; expected "
                             "{'hours': H, 'clips': N, 'rows': [[threshold, "
                             "false_accepts_per_hour, recall], ...]})") from None
        if not rows or (hours is not None and hours <= 0) or any(
                not 0 < t <= 1 or (fa is not None and fa < 0)
                or (r is not None and not 0 <= r <= 1) for t, fa, r in rows):
            raise ValueError("det_table needs hours > 0 and rows of threshold in (0, 1], "
                             "false accepts per hour >= 0, recall in [0, 1]")
        return cls(hours, clips, rows)

    def threshold_for(self, max_false_accepts_per_hour: float) -> float:
        """The lowest threshold whose false accepts per hour are ``<=`` the target: the
        best recall that meets it. Raises ``ValueError`` when no row does (rows without a
        figure, null in the table, never do)."""
        known = [row for row in self.rows if row[1] is not None]
        for t, fa, _ in known:
            if fa <= max_false_accepts_per_hour:
                return t
        if not known:
            raise ValueError("the model's det_table has no false-accept figures (it was "
                             "measured on no audio without the keyword)")
        best = min(known, key=lambda row: (row[1], row[0]))
        raise ValueError(f"no threshold in the model's table gives <= "
                         f"{max_false_accepts_per_hour:g} false accepts per hour (the fewest "
                         f"is {best[1]:g}/h at threshold {best[0]:g}, measured on "
                         f"{self.hours or 0:g} h)")

    def row_at(self, threshold: float):
        """The row whose threshold is nearest ``threshold``."""
        return min(self.rows, key=lambda row: abs(row[0] - threshold))
