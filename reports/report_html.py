"""The report's HTML page (self-contained: tables inline, figures as data URIs) and Markdown."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from reports.report_tables import CLASS_TABLE, EPOCH_TABLE, SCORE_TABLE, TILE_TABLE

REPORT_HTML = "report.html"
SUMMARY_MD = "summary.md"

TABLE_TITLES = {
    CLASS_TABLE: "Objects per predicted class",
    SCORE_TABLE: "Score (probability of the predicted class), quantiles per predicted class",
    TILE_TABLE: "Objects per HEALPix tile",
    EPOCH_TABLE: "Good epochs per object (quantiles over objects with epochs in the band)",
}


_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #eee; } td:first-child { text-align: left; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; } .notes li { color: #8a4b00; }
"""


def _figure_link(path: Path, output_dir: Path) -> str:
    """Where the HTML page, in ``output_dir``, finds ``path``."""
    return Path(os.path.relpath(path, output_dir)).as_posix()


@dataclass(frozen=True)
class Section:
    """One part of the report page: its heading, text, tables (by key), figures (by caption)."""

    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()


def _placed(
    sections: Sequence[Section] | None,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
) -> list[Section]:
    """``sections`` with only existing tables and figures; what none places goes in a last one."""
    placed = [
        replace(
            s,
            tables=tuple(k for k in s.tables if k in tables),
            figures=tuple(c for c in s.figures if c in figures),
        )
        for s in sections or ()
    ]
    tables_left = tuple(k for k in tables if not any(k in s.tables for s in placed))
    figures_left = tuple(c for c in figures if not any(c in s.figures for s in placed))
    if tables_left or figures_left:
        placed.append(Section("More tables and figures", (), tables_left, figures_left))
    return placed


def write_html(
    output_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
    title: str,
    properties: Mapping[str, str],
    notes: Sequence[str] = (),
    sections: Sequence[Section] | None = None,
) -> Path:
    """Write :data:`REPORT_HTML`: one self-contained page of the tables and figures.

    Results first: ``sections`` in order (tables and figures no section names follow in a last
    one), then the notes, then the provenance (``properties``) folded away in a details block.

    Parameters
    ----------
    output_dir : str or Path
    tables : dict of str to pandas.DataFrame
        Shown as HTML tables, titled from :data:`TABLE_TITLES` (or their key).
    figures : dict of str to Path
        Caption -> PNG file. Each is embedded as a base64 data URI, and linked by file name.
    title : str
    properties : dict of str to str
        Shown as a two-column table (provenance).
    notes : sequence of str
        What was skipped, and why.

    Returns
    -------
    Path
        The page.
    """
    output_dir = Path(output_dir)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for section in _placed(sections, tables, figures):
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(text)}</p>" for text in section.paragraphs]
        for key in section.tables:
            parts.append(f'<h3 id="{esc(key)}">{esc(TABLE_TITLES.get(key, key))}</h3>')
            parts.append(
                tables[key].to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
            )
        for caption in section.figures:
            path = Path(figures[caption])
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            link = esc(_figure_link(path, output_dir))
            parts += [
                f'<figure id="{esc(path.stem)}">',
                f'<img src="data:image/png;base64,{data}" alt="{esc(caption)}">',
                f'<figcaption>{esc(caption)} (<a href="{link}">{esc(path.name)}</a>)</figcaption>',
                "</figure>",
            ]
    if notes:
        parts += ['<h2>Notes</h2><ul class="notes">', *[f"<li>{esc(n)}</li>" for n in notes]]
        parts.append("</ul>")
    parts += [
        "<details><summary>Provenance: the catalog's properties, model and inputs</summary>",
        "<table>",
        *[f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in properties.items()],
        "</table></details>",
        "</body></html>",
    ]
    path = output_dir / REPORT_HTML
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _markdown_table(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        if isinstance(value, float | np.floating):
            return f"{value:.3f}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_summary_markdown(
    output_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, str | Path],
    title: str,
    properties: Mapping[str, str],
    notes: Sequence[str] = (),
    sections: Sequence[Section] | None = None,
) -> Path:
    """Write :data:`SUMMARY_MD`: the same content as the HTML page, as Markdown text."""
    output_dir = Path(output_dir)
    lines = [f"# {title}"]
    for section in _placed(sections, tables, figures):
        lines += ["", f"## {section.title}"]
        for text in section.paragraphs:
            lines += ["", text]
        for key in section.tables:
            lines += ["", f"### {TABLE_TITLES.get(key, key)}", "", _markdown_table(tables[key])]
        if section.figures:
            lines.append("")
        lines += [
            f"- [{Path(figures[c]).name}]({_figure_link(Path(figures[c]), output_dir)}): {c}"
            for c in section.figures
        ]
    if notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    lines += ["", "## Provenance", ""]
    lines += [f"- **{k}**: {v}" for k, v in properties.items()]
    path = output_dir / SUMMARY_MD
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
