"""udfs imported from a --py-files zip (as on a Spark cluster) keeps its numba kernels cached."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import udfs.association as a
assert a._find(np.arange(3), 2) == 2
print(a.__file__)
"""


def test_kernels_from_a_zip_load_from_an_extracted_copy_and_are_cached(tmp_path):
    archive = tmp_path / "varsky-pyfiles.zip"
    with zipfile.ZipFile(archive, "w") as z:  # what spark-submit.sh ships
        for package in ("jobs", "udfs", "catalogs", "reports"):
            for path in sorted((REPO / package).rglob("*.py")):
                z.write(path, path.relative_to(REPO).as_posix())
    cache = tmp_path / "numba_cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    files = []
    for _ in range(2):  # the second process finds the copy and the compiled kernel
        run = subprocess.run([sys.executable, "-c", CHILD, str(archive)], env=env,
                             capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
        files.append(Path(run.stdout.strip()))
    assert files[0] == files[1] and files[0].is_file()
    assert files[0].parent.parent.parent == cache and files[0].parts[-3].startswith("varsky-src-")
    assert [p.name for p in cache.iterdir() if p.name.startswith("varsky-src-")] == [
        files[0].parts[-3]
    ]  # one copy per zip content, no partial copies left
    assert list(cache.rglob("association._find-*.nbi")), "numba wrote no cache index"
