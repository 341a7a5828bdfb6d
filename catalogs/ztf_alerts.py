"""ZTF alert packets (Avro) as epoch rows: each packet's detection, history and upper limits.

A ZTF public alert (schemas 3.3 to 4.x) holds one new detection, ``candidate``, and the 30-day
history at its position, ``prv_candidates``: earlier detections, which have a ``candid``, and
non-detections, which have only a time, a band and ``diffmaglim``, the 5-sigma limiting
magnitude of that difference image. The photometry is the difference image's: ``magpsf`` and
``sigmapsf`` (mag) of the absolute difference flux, with ``isdiffpos`` its sign ('t' or '1':
brighter than the reference image; 'f' or '0': fainter). The sign is kept as read; nothing here
adds the reference flux back.

A later packet of the same object repeats the history of the earlier ones, so the same epoch can
come in several packets: detections carry their ``candid``, and whoever merges packets removes
the repeats (``varsky ingest`` does, and counts them).

Read with fastavro, the reader ZTF's own alert tools and the brokers use.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from catalogs.errors import InputError

#: Rows of :func:`read_alert_file`: one per epoch of a packet (its candidate first).
ALERT_EPOCH_SCHEMA = pa.schema(
    [
        pa.field("objectId", pa.string()),
        pa.field("candid", pa.int64()),  # null for a non-detection
        pa.field("jd", pa.float64()),  # days: Julian date of the exposure's start (UTC-based)
        pa.field("fid", pa.int32()),  # 1 g, 2 r, 3 i
        pa.field("magpsf", pa.float32()),  # mag, of |difference flux|; null for a non-detection
        pa.field("sigmapsf", pa.float32()),  # mag
        pa.field("isdiffpos", pa.bool_()),  # True: brighter than the reference; null: no detection
        pa.field("diffmaglim", pa.float32()),  # mag, 5-sigma limit of the difference image
        pa.field("ra", pa.float64()),  # degrees; a non-detection gets the packet's candidate's
        pa.field("dec", pa.float64()),  # degrees
        pa.field("rb", pa.float32()),  # real-bogus score, 0 to 1
        pa.field("alert_candid", pa.int64()),  # the packet's own candidate
    ]
)
_NAME = re.compile(r"ZTF(\d\d)([a-z]{7})")
_LETTERS = 26**7


def ztf_name_to_objectid(name: str) -> int:
    """A ZTF object name (``ZTF20aaelulu``) as an int64: year * 26**7 + its letters in base 26.

    One to one, and :func:`objectid_to_ztf_name` gives the name back.
    """
    found = _NAME.fullmatch(name)
    if found is None:
        raise ValueError(f"not a ZTF object name (ZTF, 2 digits, 7 letters a-z): {name!r}")
    letters = 0
    for ch in found.group(2):
        letters = letters * 26 + (ord(ch) - ord("a"))
    return int(found.group(1)) * _LETTERS + letters


def objectid_to_ztf_name(objectid: int) -> str:
    """Inverse of :func:`ztf_name_to_objectid`."""
    year, letters = divmod(int(objectid), _LETTERS)
    chars = []
    for _ in range(7):
        letters, k = divmod(letters, 26)
        chars.append(chr(ord("a") + k))
    return f"ZTF{year:02d}{''.join(reversed(chars))}"


def _sign(value) -> bool | None:
    if value is None:
        return None
    return str(value) in ("t", "1", "True", "true")


def read_alert_file(path: str) -> pa.Table:
    """Every epoch of every alert in one Avro file, :data:`ALERT_EPOCH_SCHEMA` rows.

    Raises :class:`catalogs.errors.InputError` naming the file for a file that is not Avro, is
    truncated, or lacks an alert's fields.
    """
    import fastavro

    try:
        with open(path, "rb") as handle:
            alerts = list(fastavro.reader(handle))
    except (ValueError, EOFError, OSError) as error:
        raise InputError(path, f"not a readable ZTF alert packet (Avro): {error}") from None
    rows = {name: [] for name in ALERT_EPOCH_SCHEMA.names}
    for k, alert in enumerate(alerts):
        for field in ("objectId", "candid", "candidate"):
            if field not in alert or alert[field] is None:
                raise InputError(path, "an alert packet needs objectId, candid and candidate",
                                 column=field, row=k)  # fmt: skip
        candidate = alert["candidate"]
        for epoch in [candidate, *(alert.get("prv_candidates") or [])]:
            detected = epoch.get("candid") is not None
            rows["objectId"].append(alert["objectId"])
            rows["candid"].append(epoch.get("candid"))
            rows["jd"].append(epoch.get("jd"))
            rows["fid"].append(epoch.get("fid"))
            rows["magpsf"].append(epoch.get("magpsf") if detected else None)
            rows["sigmapsf"].append(epoch.get("sigmapsf") if detected else None)
            rows["isdiffpos"].append(_sign(epoch.get("isdiffpos")) if detected else None)
            rows["diffmaglim"].append(epoch.get("diffmaglim"))
            position = epoch if detected and epoch.get("ra") is not None else candidate
            rows["ra"].append(position.get("ra"))
            rows["dec"].append(position.get("dec"))
            rows["rb"].append(epoch.get("rb"))
            rows["alert_candid"].append(alert["candid"])
    return pa.table(
        {f.name: pa.array(rows[f.name], f.type) for f in ALERT_EPOCH_SCHEMA},
        schema=ALERT_EPOCH_SCHEMA,
    )


def check_alert_files(paths: list[str]) -> int:
    """Fail on the first file that is not a complete Avro container; return the alerts counted.

    Walks each file's blocks without decoding a record (about 0.5 ms a packet), so that a
    truncated or foreign file stops the job before any Spark work with one line naming it.
    """
    import fastavro

    n = 0
    for path in paths:
        try:
            with open(path, "rb") as handle:
                n += sum(block.num_records for block in fastavro.block_reader(handle))
        except (ValueError, EOFError, OSError) as error:
            raise InputError(path, f"not a readable ZTF alert packet (Avro): {error}") from None
    return n


def objectids(names: pa.Array | pa.ChunkedArray, path: str) -> np.ndarray:
    """:func:`ztf_name_to_objectid` of every name; an InputError names the first bad row."""
    out = np.empty(len(names), np.int64)
    cache: dict[str, int] = {}
    for row, name in enumerate(names.to_pylist()):
        if name not in cache:
            try:
                cache[name] = ztf_name_to_objectid(name or "")
            except ValueError as error:
                raise InputError(path, str(error), column="objectId", row=row) from None
        out[row] = cache[name]
    return out
