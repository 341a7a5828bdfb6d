"""The ingest of detections with reference objects, per task: read into tiles, build one tile.

The objects (merged reference sources) and their output HATS tiles are known before any
detection is read. Each read task therefore gives every kept detection its object and that
object's output tile, writes its rejects itself, and hands on one blob per tile
(:mod:`udfs.kernels.tile_blobs`). Each build task gets one output tile's blobs, the detections
and the reference members of its objects, builds the light curves and writes the tile's file.
Arrow and numpy only; the Spark plan around these is in ``jobs/ingest.py``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalogs.detection_tables import INGEST_DETECTION_SCHEMA
from catalogs.hats_tiles import Tiles
from catalogs.hats_writer import TILE_COLUMN, write_tile_files
from catalogs.healpix import healpix_29
from catalogs.schema import (
    DEC,
    HEALPIX_COLUMN,
    RA,
    REJECT_REASON,
    SOURCE_IDS,
    DetColumn,
    DetectionRejectReason,
)
from catalogs.task_files import ParquetFileInTask
from udfs.kernels.lightcurve_building import (
    BUILD_INPUT_COLUMNS,
    LIGHTCURVE_CATALOG_SCHEMA,
    build_lightcurves_and_duplicate_rows,
)
from udfs.kernels.tile_association import (
    MEMBERSHIP_SCHEMA,
    OBJECT_DEC,
    OBJECT_RA,
    OBJECTID,
    SOURCE_ID,
)
from udfs.kernels.tile_blobs import BLOB, KIND, N_ROWS, SEQ, blob_row, pack_by_tile, unpack

#: Blob kinds.
KIND_MEMBERS = 1  # MEMBERSHIP_SCHEMA rows: an object's reference sources and position
KIND_DETECTIONS = 2  # DETECTION_BLOB_SCHEMA rows: kept detections with their objectid
KIND_COUNTS = 3  # n_rows detections read, the blob their reason in UTF-8 (b"" for kept)
#: The tile the read counts go to.
COUNTS_TILE = -1

#: Kept detections as they travel (their reject reason is null).
DETECTION_BLOB_SCHEMA = pa.schema([f for f in INGEST_DETECTION_SCHEMA if f.name != REJECT_REASON])
#: The same, file paths as indices into the read task's list of paths: packing then moves ints,
#: not a string a row.
PACKED_DETECTION_SCHEMA = DETECTION_BLOB_SCHEMA.set(
    DETECTION_BLOB_SCHEMA.get_field_index(DetColumn.SOURCE_FILE),
    pa.field(DetColumn.SOURCE_FILE, pa.dictionary(pa.int32(), pa.string())),
)

#: Rows a read task holds before it packs them into blobs.
FLUSH_ROWS = 262_144

#: What a build task returns: a written file (order, pixel, nrows, skymap, n_epochs and its
#: duplicates as reason/count) or, in the counts tile, one row per reason of the read.
RESULT_SCHEMA = pa.schema(
    [
        pa.field("order", pa.int32()),
        pa.field("pixel", pa.int64()),
        pa.field("nrows", pa.int64()),
        pa.field("skymap_pixels", pa.list_(pa.int64())),
        pa.field("skymap_counts", pa.list_(pa.int64())),
        pa.field("n_epochs", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("count", pa.int64()),
    ]
)


def member_blobs(members: pa.RecordBatch, out_tiles: Tiles) -> Iterator[pa.RecordBatch]:
    """Blobs of membership rows, each in the output tile of its object's position."""
    members = pa.Table.from_batches([members]).select(MEMBERSHIP_SCHEMA.names)
    ra = members.column(OBJECT_RA).to_numpy()
    dec = members.column(OBJECT_DEC).to_numpy()
    tile = out_tiles.tile_index(healpix_29(ra, dec))
    if np.any(tile < 0):
        raise RuntimeError(f"{int(np.sum(tile < 0))} objects lie in no output tile (a varsky bug)")
    yield from pack_by_tile(members, tile, KIND_MEMBERS)


def read_into_tiles(
    files: Iterable[tuple[int, str]],
    read_file: Callable[[str], pa.Table],
    assign: Callable[[pa.Table], tuple[pa.Table, np.ndarray]],
    rejects_path: str,
    flush_rows: int = FLUSH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Read files; write their rejects to ``rejects_path``; yield blobs of kept detections.

    ``files`` are (file_index, path), read in file_index order. ``read_file(path)`` gives
    INGEST_DETECTION_SCHEMA rows; ``assign(table)`` gives them their objectid (or a reject
    reason) and each row's output tile. Yields detection blobs per output tile and, last, one
    counts blob per reason (tile :data:`COUNTS_TILE`), so that rows in can be checked against
    rows out + rows rejected. The rejects file is written even when empty, and only once every
    file was read.
    """
    counts: Counter = Counter()
    pending: list[pa.Table] = []
    pending_tiles: list[np.ndarray] = []
    n_pending = 0
    rejects = ParquetFileInTask(rejects_path, INGEST_DETECTION_SCHEMA)
    files = sorted(files)
    paths = pa.array([path for _, path in files], pa.string())
    # Blobs numbered from the task's first file index: a build orders them so on every run.
    seq = itertools.count(files[0][0] << 24 if files else 0)
    source_file = PACKED_DETECTION_SCHEMA.get_field_index(DetColumn.SOURCE_FILE)
    for i, (_, path) in enumerate(files):
        detections, out_tile = assign(read_file(path))
        reason = detections.column(REJECT_REASON)
        for value, n in zip(*_value_counts(reason), strict=True):
            counts[value] += n
        kept = reason.is_null()
        rejects.write(detections.filter(pc.invert(kept)))
        kept_np = kept.to_numpy(zero_copy_only=False)
        if kept_np.any():
            table = detections.filter(kept).drop_columns([REJECT_REASON])
            index = pa.array(np.full(table.num_rows, i, dtype=np.int32))
            table = table.set_column(
                source_file,
                PACKED_DETECTION_SCHEMA.field(source_file),
                pa.DictionaryArray.from_arrays(index, paths),
            )
            pending.append(table)
            pending_tiles.append(out_tile[kept_np])
            n_pending += table.num_rows
        if n_pending >= flush_rows:
            yield from _pack_detections(pending, pending_tiles, seq)
            pending, pending_tiles, n_pending = [], [], 0
    yield from _pack_detections(pending, pending_tiles, seq)
    rejects.close()
    for value, n in sorted(counts.items(), key=lambda kv: kv[0] or ""):
        yield blob_row(COUNTS_TILE, KIND_COUNTS, n, (value or "").encode())


def _value_counts(reason: pa.ChunkedArray) -> tuple[list, list]:
    if len(reason) == 0:
        return [], []
    counts = pc.value_counts(reason)
    return counts.field(0).to_pylist(), counts.field(1).to_pylist()


def _pack_detections(
    tables: list[pa.Table], tiles: list[np.ndarray], seq: Iterator[int]
) -> Iterator[pa.RecordBatch]:
    if not tables:
        return
    table = pa.concat_tables(tables).cast(PACKED_DETECTION_SCHEMA)
    yield from pack_by_tile(table, np.concatenate(tiles), KIND_DETECTIONS, seq)


def build_tile(
    blobs: pa.Table,
    tile: int,
    out_tiles: Tiles,
    base: str,
    skymap_order: int,
    write_kwargs: dict,
    rejects_dir: str,
) -> pa.Table:
    """Build and write one output tile's light curves from its blobs; :data:`RESULT_SCHEMA`.

    Light curves take their object's reference position (the mean of its reference sources, as
    ZTF's DR objra/objdec) and its reference source ids. Duplicate detections go to
    ``rejects_dir/dup-ORDER-PIXEL.parquet``. The counts tile sums the read's counts instead.
    """
    kind = blobs.column(KIND).to_numpy()
    if tile == COUNTS_TILE:
        return _sum_counts(blobs, kind)
    members = unpack(_blobs_of(blobs, kind, KIND_MEMBERS), MEMBERSHIP_SCHEMA)
    # File paths stay indices: only the duplicates' rows need them as text.
    detections = unpack(_blobs_of(blobs, kind, KIND_DETECTIONS), PACKED_DETECTION_SCHEMA)
    if detections.num_rows == 0:
        return RESULT_SCHEMA.empty_table()
    build_input = detections.append_column(
        SOURCE_IDS, pa.nulls(detections.num_rows, pa.int64())
    ).select(list(BUILD_INPUT_COLUMNS))
    lcs, duplicate_rows = build_lightcurves_and_duplicate_rows(build_input, positions=False)
    lcs = _with_reference_positions(lcs, members)
    order = np.lexsort((lcs.column(OBJECTID).to_numpy(), lcs.column(HEALPIX_COLUMN).to_numpy()))
    lcs = lcs.take(pa.array(order))
    batch = lcs.append_column(
        pa.field(TILE_COLUMN, pa.int64(), nullable=False),
        pa.array(np.full(lcs.num_rows, tile, dtype=np.int64)),
    ).combine_chunks()
    written = list(
        write_tile_files(batch.to_batches(), base, out_tiles, skymap_order, write_kwargs)
    )
    (row,) = written
    n_dup = int(duplicate_rows.size)
    if n_dup:
        tile_order, pixel = out_tiles.order_pixel(tile)
        dups = (
            detections.unify_dictionaries()
            .take(pa.array(np.sort(duplicate_rows)))
            .cast(DETECTION_BLOB_SCHEMA)
        )
        dups = dups.append_column(
            REJECT_REASON, pa.array([DetectionRejectReason.DUPLICATE] * n_dup, pa.string())
        )
        out = ParquetFileInTask(f"{rejects_dir}/dup-{tile_order}-{pixel}.parquet", dups.schema)
        out.write(dups)
        out.close()
    result = pa.Table.from_batches([row]).to_pydict()
    result.update(
        n_epochs=[int(pc.sum(lcs.column("n_epochs")).as_py())],
        reason=[DetectionRejectReason.DUPLICATE],
        count=[n_dup],
    )
    return pa.Table.from_pydict(result, schema=RESULT_SCHEMA)


def _blobs_of(blobs: pa.Table, kind: np.ndarray, wanted: int) -> list[pa.Buffer]:
    """The blobs of one kind in ``seq`` order, whatever order the shuffle delivered them in.

    Rows then sit in the same place on every run, so of two identical detections the same one
    is kept.
    """
    rows = np.flatnonzero(kind == wanted)
    rows = rows[np.argsort(blobs.column(SEQ).to_numpy()[rows], kind="stable")]
    return [blob.as_buffer() for blob in blobs.column(BLOB).take(pa.array(rows))]


def _sum_counts(blobs: pa.Table, kind: np.ndarray) -> pa.Table:
    counts: Counter = Counter()
    rows = np.flatnonzero(kind == KIND_COUNTS)
    reasons = blobs.column(BLOB).take(pa.array(rows)).to_pylist()
    for reason, n in zip(reasons, blobs.column(N_ROWS).to_numpy()[rows], strict=True):
        counts[reason.decode() or None] += int(n)
    reasons = sorted(counts, key=lambda r: r or "")
    columns = {f.name: pa.nulls(len(reasons), f.type) for f in RESULT_SCHEMA}
    columns["reason"] = pa.array(reasons, pa.string())
    columns["count"] = pa.array([counts[r] for r in reasons], pa.int64())
    return pa.table(columns, schema=RESULT_SCHEMA)


def _with_reference_positions(lcs: pa.Table, members: pa.Table) -> pa.Table:
    """``lcs`` with ra, dec, `_healpix_29` and source_ids of their objects' reference sources."""
    obj = members.column(OBJECTID).to_numpy()
    src = members.column(SOURCE_ID).to_numpy()
    by = np.lexsort((src, obj))
    obj, src = obj[by], src[by]
    m_ra = members.column(OBJECT_RA).to_numpy()[by]
    m_dec = members.column(OBJECT_DEC).to_numpy()[by]
    objects, first, n_sources = np.unique(obj, return_index=True, return_counts=True)
    lc_obj = lcs.column(OBJECTID).to_numpy()
    pos = np.searchsorted(objects, lc_obj)
    if np.any(pos >= objects.size) or np.any(objects[np.minimum(pos, objects.size - 1)] != lc_obj):
        raise RuntimeError("a light curve's object has no reference members here (a varsky bug)")
    ra, dec = m_ra[first[pos]], m_dec[first[pos]]
    counts = n_sources[pos]
    offsets = np.zeros(lc_obj.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = np.repeat(first[pos] - offsets[:-1], counts) + np.arange(offsets[-1])
    source_ids = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(src[take]))
    for name, values in (
        (RA, pa.array(ra)),
        (DEC, pa.array(dec)),
        (HEALPIX_COLUMN, pa.array(healpix_29(ra, dec))),
        (SOURCE_IDS, source_ids),
    ):
        index = LIGHTCURVE_CATALOG_SCHEMA.get_field_index(name)
        lcs = lcs.set_column(index, LIGHTCURVE_CATALOG_SCHEMA.field(index), values)
    return lcs
