"""Rendering a run report as Markdown or as one HTML file.

A report is built from :class:`Report` (facts, tables, figures) so that both formats
carry the same content. Tables arrive as Markdown (the evaluation tables are written
in Markdown) and are turned into HTML tables for the HTML report; figures are PNG
files referenced by paths relative to the report.

Example:
    >>> report = Report(title="demo", sections=(Section("Run", text="A tiny run."),))
    >>> render_markdown(report).splitlines()[0]
    '# demo'
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medi2i.io.atomic import atomic_path

ReportFormat = Literal["markdown", "html"]
REPORT_FILES: dict[ReportFormat, str] = {"markdown": "report.md", "html": "report.html"}


@dataclass(frozen=True)
class Figure:
    """A PNG figure of the report.

    Attributes:
        path: The PNG, relative to the report's folder.
        caption: One sentence saying what it shows.
    """

    path: str
    caption: str


@dataclass(frozen=True)
class Section:
    """A titled part of the report: text, then tables, then figures.

    Attributes:
        title: Section heading.
        text: Paragraph(s) of plain text (blank lines separate paragraphs).
        facts: ``(name, value)`` pairs shown as a two-column table.
        tables: Markdown tables (``| a | b |`` rows), each with an optional caption.
        figures: Figures shown below.
        code: A shell snippet (e.g. how to rerun).
    """

    title: str
    text: str = ""
    facts: Sequence[tuple[str, str]] = ()
    tables: Sequence[tuple[str, str]] = ()
    figures: Sequence[Figure] = ()
    code: str = ""


@dataclass(frozen=True)
class Report:
    """A whole report.

    Attributes:
        title: Document title.
        sections: Its sections, in order.
        subtitle: A line under the title (e.g. the workflow description).
    """

    title: str
    sections: Sequence[Section] = field(default_factory=tuple)
    subtitle: str = ""


def write_report(report: Report, folder: str | Path, *, format: ReportFormat) -> Path:
    """Write ``report.md`` or ``report.html`` into ``folder`` atomically.

    Returns:
        The file written.
    """
    path = Path(folder) / REPORT_FILES[format]
    text = render_markdown(report) if format == "markdown" else render_html(report)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# -- Markdown --------------------------------------------------------------------------------


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown."""
    parts = [f"# {report.title}"]
    if report.subtitle:
        parts.append(report.subtitle)
    for section in report.sections:
        parts.append(f"## {section.title}")
        if section.text:
            parts.append(section.text)
        if section.facts:
            parts.append(_facts_markdown(section.facts))
        for caption, table in section.tables:
            parts += [f"**{caption}**", table] if caption else [table]
        for figure in section.figures:
            parts.append(f"![{figure.caption}]({figure.path})\n\n*{figure.caption}*")
        if section.code:
            parts.append(f"```bash\n{section.code}\n```")
    return "\n\n".join(parts) + "\n"


def _facts_markdown(facts: Sequence[tuple[str, str]]) -> str:
    rows = ["| | |", "|---|---|"]
    rows += [f"| {_cell(name)} | {_cell(value)} |" for name, value in facts]
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- HTML --------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; }
figcaption { font-style: italic; color: #555; }
pre { background: #f4f4f4; padding: 0.7em; overflow-x: auto; }
""".strip()


def render_html(report: Report) -> str:
    """The report as one HTML document (figures referenced, not embedded)."""
    body = [f"<h1>{html.escape(report.title)}</h1>"]
    if report.subtitle:
        body.append(f"<p>{html.escape(report.subtitle)}</p>")
    for section in report.sections:
        body.append(_section_html(section))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(report.title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n"
        "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def _section_html(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    for paragraph in (p for p in section.text.split("\n\n") if p.strip()):
        parts.append(f"<p>{html.escape(paragraph)}</p>")
    if section.facts:
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
            for name, value in section.facts
        )
        parts.append(f"<table>{rows}</table>")
    for caption, table in section.tables:
        if caption:
            parts.append(f"<p><strong>{html.escape(caption)}</strong></p>")
        parts.append(markdown_table_to_html(table))
    for figure in section.figures:
        parts.append(
            f'<figure><img src="{html.escape(figure.path)}" alt="{html.escape(figure.caption)}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
        )
    if section.code:
        parts.append(f"<pre><code>{html.escape(section.code)}</code></pre>")
    return "\n".join(parts)


def markdown_table_to_html(table: str) -> str:
    """Convert a simple Markdown table (header, ``---`` rule, rows) to an HTML table."""
    rows = [_split_row(line) for line in table.strip().splitlines() if line.strip()]
    rows = [row for row in rows if not all(set(cell) <= set("-: ") for cell in row)]
    if not rows:
        return ""
    header = "".join(f"<th>{html.escape(cell)}</th>" for cell in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows[1:]
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _split_row(line: str) -> list[str]:
    cells = line.strip().strip("|").replace("\\|", "\0").split("|")
    return [cell.strip().replace("\0", "|") for cell in cells]
