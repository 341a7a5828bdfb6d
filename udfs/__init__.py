"""Kernels, model and training code on numpy/Arrow batches, with thin engine wrappers.

numba caches a compiled kernel only when its module's source is a file on disk. On a cluster,
spark-submit ships this package in a zip (``--py-files``), and from there every Python worker
compiled every kernel afresh (about a minute each). So when this package is imported from a zip,
its modules are imported from a copy of the zip extracted once per machine instead (in
``NUMBA_CACHE_DIR``, else the temporary folder; one folder per zip content).
"""

from __future__ import annotations

import os as _os


def _extracted_package_path(init_file: str) -> str | None:
    """The package folder in an on-disk copy of the zip holding ``init_file`` (None: no zip)."""
    import hashlib
    import shutil
    import tempfile
    import zipfile

    archive, sep, inner = init_file.rpartition(".zip" + _os.sep)
    if not sep or _os.path.exists(init_file):
        return None
    archive += ".zip"
    with open(archive, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    parent = _os.environ.get("NUMBA_CACHE_DIR") or tempfile.gettempdir()
    root = _os.path.join(parent, f"varsky-src-{digest}")
    if not _os.path.isdir(root):
        _os.makedirs(parent, exist_ok=True)
        part = tempfile.mkdtemp(dir=parent, prefix=f"varsky-src-{digest}.part-")
        with zipfile.ZipFile(archive) as z:
            z.extractall(part)
        try:
            _os.rename(part, root)  # atomic: other workers see all of it or none
        except OSError:  # another worker of this machine was first
            shutil.rmtree(part, ignore_errors=True)
    return _os.path.join(root, _os.path.dirname(inner))


_extracted = _extracted_package_path(__file__)
if _extracted is not None:
    __path__ = [_extracted]  # noqa: F821 - submodules now load from disk, numba caches them
