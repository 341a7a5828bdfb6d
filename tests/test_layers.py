"""Layers point down only: jobs -> reports -> udfs -> catalogs (issue: one vocabulary).

Read from the source with ``ast``, so imports inside functions count too. catalogs/ is the
format layer and holds no engine import except in its named Spark adapter module.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Lowest first: a module may import its own layer and the ones before it.
LAYERS = ("catalogs", "udfs", "reports", "jobs")
#: The only catalogs/ module allowed to import pyspark.
SPARK_ADAPTER = "catalogs/spark_tables.py"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations() -> list[str]:
    bad = []
    for rank, layer in enumerate(LAYERS):
        higher = LAYERS[rank + 1 :]
        for path in sorted((REPO / layer).glob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for line, module in _imports(path):
                top = module.split(".")[0]
                if top in higher:
                    bad.append(f"{rel}:{line} imports {module} (a higher layer)")
                if layer == "catalogs" and top == "pyspark" and rel != SPARK_ADAPTER:
                    bad.append(f"{rel}:{line} imports {module} (engine code in the format layer)")
    return bad


def test_no_module_imports_a_higher_layer():
    assert _violations() == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    # The checker itself must be able to fail: a fake catalogs module importing udfs.
    fake = tmp_path / "catalogs"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from udfs.dmdt import DmDtGrid\n")
    for layer in LAYERS[1:]:
        (tmp_path / layer).mkdir()
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    assert _violations() == ["catalogs/bad.py:2 imports udfs.dmdt (a higher layer)"]
