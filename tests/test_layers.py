"""Layers point down only: jobs -> reports -> udfs (engines, pipeline, model, simulators,
kernels) -> catalogs.

Read from the source with ``ast``, so imports inside functions count too. catalogs/ is the
format layer and holds no engine import except in its named Spark adapter module.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Lowest first: a module may import its own layer and the ones before it. Inside udfs/ the
#: kernels know no model, the model no engine (udfs/__init__.py says what each holds).
LAYERS = (
    "catalogs",
    "udfs.kernels",
    "udfs.simulators",
    "udfs.model",
    "udfs.pipeline",
    "udfs.engines",
    "reports",
    "jobs",
)
PACKAGES = ("catalogs", "udfs", "reports", "jobs")
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


def _layer(module: str) -> int | None:
    ranks = [
        i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(f"{layer}.")
    ]
    return ranks[-1] if ranks else None


def _violations() -> list[str]:
    bad = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            own = _layer(rel.removesuffix(".py").replace("/", "."))
            for line, module in _imports(path):
                target = _layer(module)
                if own is not None and target is not None and target > own:
                    bad.append(f"{rel}:{line} imports {module} (a higher layer)")
                if package == "catalogs" and module.split(".")[0] == "pyspark":
                    if rel != SPARK_ADAPTER:
                        bad.append(
                            f"{rel}:{line} imports {module} (engine code in the format layer)"
                        )
    return bad


def test_no_module_imports_a_higher_layer():
    assert _violations() == []


def test_every_udfs_module_has_a_layer():
    modules = [p.relative_to(REPO).as_posix() for p in (REPO / "udfs").rglob("*.py")]
    unplaced = [m for m in modules if _layer(m.removesuffix(".py").replace("/", ".")) is None]
    assert unplaced == ["udfs/__init__.py"]


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    # The checker itself must be able to fail: a format module importing a kernel, a kernel
    # importing the model.
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "catalogs" / "bad.py").write_text("def f():\n    from udfs.kernels.dmdt import G\n")
    (tmp_path / "udfs" / "kernels").mkdir()
    (tmp_path / "udfs" / "kernels" / "bad.py").write_text("import udfs.model.classifier\n")
    monkeypatch.setattr(__import__(__name__), "REPO", tmp_path)
    assert _violations() == [
        "catalogs/bad.py:2 imports udfs.kernels.dmdt (a higher layer)",
        "udfs/kernels/bad.py:1 imports udfs.model.classifier (a higher layer)",
    ]


def _module_graph(root: Path) -> dict[str, set[str]]:
    """Project module -> project modules it imports (at any depth of the source)."""
    modules = {
        p.relative_to(root).with_suffix("").as_posix().replace("/", "."): p
        for package in PACKAGES
        for p in sorted((root / package).rglob("*.py"))
    }
    modules = {m.removesuffix(".__init__"): p for m, p in modules.items()}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module in modules:
                    edges.add(node.module)
                edges |= {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each once, as the modules along it (depth-first search)."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                start = cycle.index(min(cycle))
                cycle = cycle[start:] + cycle[:start]
                if cycle not in found:
                    found.append(cycle)
            elif nxt not in done:
                visit(nxt, [*path, nxt])
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node, [node])
    return found


def test_no_import_circle_among_the_project_modules():
    """Imports inside functions count: a lazy import back is still a circle to a reader."""
    assert _cycles(_module_graph(REPO)) == []


def test_the_circle_check_sees_a_circle(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "jobs" / "a.py").write_text("from jobs.b import f\n")
    (tmp_path / "jobs" / "b.py").write_text("def f():\n    from jobs import a\n")
    assert _cycles(_module_graph(tmp_path)) == [["jobs.a", "jobs.b"]]
