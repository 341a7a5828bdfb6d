"""What the paths a user gives hold: the files to read, HATS catalogs, and their catalog names.

The one place that turns input paths into files, for `varsky ingest` (every format), `varsky
classify` and `varsky report`. Paths may be local or URIs (``s3://...``, through ``pyarrow.fs``);
a directory stands for the files under it with the format's suffixes, hidden (``.``) and metadata
(``_``) files left out. A missing path or an empty directory is an :class:`InputError` naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from catalogs.errors import InputError
from catalogs.hats_paths import DATA_FILE_GLOB, DATASET_DIR, PROPERTIES_FILES
from catalogs.parquet_output import local_path
from catalogs.schema import LIGHTCURVE, InputKind

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz")
ALERT_SUFFIXES = (".avro",)
#: A column only a `varsky ingest` light-curve catalog has (IRSA's HATS catalogs do not).
_INGEST_CATALOG_COLUMN = "n_epochs"


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system of ``path`` and the path within it."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def expand_files(paths, suffixes: tuple[str, ...] = PARQUET_SUFFIXES) -> list[str]:
    """Files under ``paths`` with one of ``suffixes`` (directories expanded, sorted).

    Raises
    ------
    InputError
        If a path does not exist or a directory holds no such file.
    """
    files: list[str] = []
    for path in map(str, paths):
        fs, fs_path = filesystem(path)
        info = fs.get_file_info(fs_path)
        if info.type == pafs.FileType.NotFound:
            raise InputError(path, "input path does not exist")
        if info.type != pafs.FileType.Directory:
            files.append(path)
            continue
        listing = [
            i
            for i in fs.get_file_info(pafs.FileSelector(fs_path, recursive=True))
            if i.type == pafs.FileType.File
        ]
        found = sorted(
            i.path
            for i in listing
            if i.base_name.endswith(suffixes) and not i.base_name.startswith(("_", "."))
        )
        if not found:
            kinds = "Parquet" if suffixes == PARQUET_SUFFIXES else "/".join(suffixes)
            message = f"directory holds no {kinds} file (*{suffixes[0]})"
            n_fits = sum(i.base_name.endswith(FITS_SUFFIXES) for i in listing)
            if n_fits and suffixes == PARQUET_SUFFIXES:
                message += (
                    f" but {n_fits:,} FITS file(s): survey catalogs become light curves with "
                    "`varsky ingest --format psfcat` first (README: From survey catalogs)"
                )
            raise InputError(path, message)
        prefix = path[: path.index("://") + 3] if "://" in path else ""
        files.extend(prefix + f if prefix and not f.startswith(prefix) else f for f in found)
    seen: dict[str, str] = {}
    for f in files:
        key = f if "://" in f else str(Path(f).resolve())
        if key in seen:
            raise InputError(
                f, f"input file given twice (also as {seen[key]}); give each file once"
            )
        seen[key] = f
    return files


def is_hats_catalog(path: str) -> bool:
    """True for a local directory holding a HATS catalog (a properties file and dataset/)."""
    p = local_path(str(path))
    has_properties = any((p / name).is_file() for name in PROPERTIES_FILES)
    return p.is_dir() and has_properties and (p / DATASET_DIR).is_dir()


def hats_partition_files(path: str) -> list[str]:
    """The pixel files (Norder=K/Dir=D/Npix=N.parquet) of a local HATS catalog, sorted."""
    files = sorted(str(f) for f in Path(path, DATASET_DIR).rglob(DATA_FILE_GLOB))
    if not files:
        raise InputError(str(path), f"HATS catalog holds no {DATA_FILE_GLOB} file")
    return files


def input_catalog_name(path: str) -> str:
    """Name and release of the light curves in ``path``, for provenance columns.

    A HATS catalog: its ``obs_collection`` property (HATS 1.0; ``catalog_name`` in older
    catalogs). An IRSA DR file or folder: "ZTF DR<n>" when the name says which release
    (``..._dr5.parquet``), else its base name.
    """
    from catalogs.hats_properties import read_properties

    p = local_path(str(path))
    if is_hats_catalog(str(p)):
        properties = read_properties(p)
        for key in ("obs_collection", "catalog_name"):
            if properties.get(key):
                return properties[key]
        return p.name
    release = re.search(r"(?:^|[_./-])dr(\d+)(?:[_./-]|$)", p.name, flags=re.IGNORECASE)
    return f"ZTF DR{release.group(1)}" if release else p.name


@dataclass(frozen=True)
class LightCurveInputs:
    """Light-curve inputs resolved into files."""

    kind: InputKind  #: what every file's rows are
    files: list[str]  #: the files, sorted within each input path
    #: Name and release of each file's catalog, under every spelling of the file's path an engine
    #: may report (plain, ``file:`` and ``file://`` URIs).
    catalog_of_file: dict[str, str] = field(default_factory=dict)


def hats_input_kind(path: str, files: list[str] | None = None) -> InputKind:
    """A `varsky ingest` catalog or IRSA's DR light curves in HATS layout, from a file's schema.

    ``files``: the catalog's :func:`hats_partition_files`, when the caller has them already.
    """
    names = pq.read_schema((files or hats_partition_files(path))[0]).names
    if _INGEST_CATALOG_COLUMN in names:
        return InputKind.CATALOG
    if LIGHTCURVE in names:
        return InputKind.HATS_DR
    raise InputError(
        str(path), "HATS catalog is neither a varsky light-curve catalog nor IRSA's DR layout "
        f"(no {_INGEST_CATALOG_COLUMN!r} or nested {LIGHTCURVE!r} column)",
    )  # fmt: skip


def light_curve_inputs(paths) -> LightCurveInputs:
    """Resolve the light-curve inputs of classify or report.

    Either HATS catalogs (all of one kind: from `varsky ingest`, or IRSA's DR in HATS layout) or
    IRSA DR Parquet files and folders, not both.

    Raises
    ------
    InputError
        For a missing path, an empty folder, or a mix of kinds.
    """
    paths = [str(p) for p in paths]
    catalogs = [p for p in paths if is_hats_catalog(p)]
    if catalogs and len(catalogs) != len(paths):
        raise InputError(
            ", ".join(p for p in paths if p not in catalogs),
            "give either HATS light-curve catalogs or DR Parquet files, not both",
        )
    if catalogs:
        files_of = {c: hats_partition_files(c) for c in catalogs}
        kinds = {hats_input_kind(c, files) for c, files in files_of.items()}
        if len(kinds) > 1:
            raise InputError(", ".join(catalogs), "HATS catalogs of different kinds")
        names = {f: input_catalog_name(c) for c, files in files_of.items() for f in files}
        kind = kinds.pop()
    else:
        names = {f: input_catalog_name(f) for f in expand_files(paths)}
        kind = InputKind.DR
    catalog_of_file = {}
    for path, name in names.items():
        absolute = str(Path(path).resolve()) if "://" not in path else path
        for key in (path, absolute, "file:" + absolute, "file://" + absolute):
            catalog_of_file[key] = name
    return LightCurveInputs(kind, list(names), catalog_of_file)


def total_bytes(files: list[str]) -> int:
    """Sum of the sizes of ``files`` in bytes (0 for any the file system gives no size)."""
    by_fs: dict[str, tuple[pafs.FileSystem, list[str]]] = {}
    for path in files:
        key = "/".join(path.split("/")[:3]) if "://" in path else ""  # scheme and bucket
        if key not in by_fs:
            by_fs[key] = (filesystem(path)[0], [])
        # The path within the file system: a URI's without its scheme.
        by_fs[key][1].append(path.split("://", 1)[1] if key else path)
    return sum(i.size or 0 for fs, paths in by_fs.values() for i in fs.get_file_info(paths))
