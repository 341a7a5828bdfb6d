"""Parquet output directories written by Spark: leave only the data files and our own metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

#: Sidecar files Hadoop's local file system and committers leave behind.
_SIDECAR_PATTERNS = ("*.crc", "_SUCCESS", "_committed_*", "_started_*")


def is_local_path(path: str) -> bool:
    """True for a plain path or a file:// URI."""
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> Path:
    """The local file-system path of a plain path or file:// URI."""
    return Path(path[len("file://") :] if path.startswith("file://") else path)


def remove_spark_sidecar_files(path: str) -> int:
    """Delete ``.crc``, ``_SUCCESS`` and committer markers under a local output directory.

    Returns the number of files removed; does nothing for non-local paths.
    """
    if not is_local_path(path):
        return 0
    removed = 0
    for pattern in _SIDECAR_PATTERNS:
        for sidecar in local_path(path).rglob(pattern):
            sidecar.unlink()
            removed += 1
    return removed


def prepare_output_dir(path: str, overwrite: bool) -> None:
    """Refuse to write into an existing local output unless ``overwrite``; then clear it."""
    if not is_local_path(path):
        return
    target = local_path(path)
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
        shutil.rmtree(target)


#: Suffix of the folder a job writes into before it renames it to the output's name.
STAGING_SUFFIX = ".varsky-partial"


def staging_path(path: str) -> str:
    """Where a job writes ``path`` until it is complete (local paths; others are written in place).

    A run that dies leaves only this folder (and any previous output untouched), so a partial
    output never looks complete to lsdb or hats under the output's name.
    """
    return path + STAGING_SUFFIX if is_local_path(path) else path


def check_output_dir(path: str, overwrite: bool, keep_staging: bool = False) -> None:
    """Refuse an existing output unless ``overwrite``; clear a staging folder a dead run left.

    With ``keep_staging`` (``--resume``) the staging folder stays for ``catalogs.resume``.
    """
    if not is_local_path(path):
        return
    if local_path(path).exists() and not overwrite:
        raise FileExistsError(f"output {path} exists; pass --overwrite to replace it")
    staging = local_path(staging_path(path))
    if staging.exists() and not keep_staging:
        shutil.rmtree(staging)


def publish_output(staging: str, path: str) -> None:
    """Replace ``path`` by the finished ``staging`` folder (a rename on local file systems)."""
    if staging == path or not is_local_path(path):
        return
    target = local_path(path)
    if target.exists():
        shutil.rmtree(target)
    local_path(staging).rename(target)
