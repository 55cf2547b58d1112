"""One document model, two renderings: Markdown (images by relative path) and an HTML page,
self-contained by default (images inlined as base64 data URIs) or, with ``images="link"``,
pointing at the PNGs by relative path like the Markdown (a page of kilobytes instead of
megabytes, for reports kept under version control).

The HTML comes from the Jinja2 template ``templates/report.html.j2`` with autoescaping on, so
text read from run files (class names, config values, paths) can never inject markup; the
Markdown renderer escapes every string itself. :class:`Details` is a collapsible section
(``<details>`` in both: GitHub renders it in Markdown too).
"""

from __future__ import annotations

import base64
import html
import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Literal

__all__ = ["Block", "Cell", "Code", "Details", "Heading", "Image", "Items", "Para", "Table",
           "fmt_number", "fmt_signed", "to_html", "to_markdown"]


@dataclass
class Heading:
    level: int
    text: str
    kind: ClassVar[str] = "heading"


@dataclass
class Para:
    text: str
    note: bool = False  # rendered smaller / in italics
    kind: ClassVar[str] = "para"


@dataclass
class Cell:
    """A table cell with emphasis: ``bold`` (the best value of its column) and ``sub``, a
    second, smaller line (a difference against the baseline)."""

    text: str
    bold: bool = False
    sub: str = ""


@dataclass
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str | Cell]]
    id: str = ""  # the HTML element's id (tests and links find the table by it)
    kind: ClassVar[str] = "table"

    def cells(self) -> list[list[Cell]]:
        """Every row as :class:`Cell` objects (plain strings become plain cells)."""
        return [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in self.rows]


@dataclass
class Items:
    """A bullet list; each item is text optionally followed by a command in code style."""

    items: Sequence[tuple[str, str | None]] = field(default_factory=list)
    kind: ClassVar[str] = "items"


@dataclass
class Code:
    text: str
    kind: ClassVar[str] = "code"


@dataclass
class Image:
    path: str  # relative to the Markdown file
    data: bytes  # the PNG, inlined in HTML (unless the page links its images)
    alt: str
    caption: list[str] = field(default_factory=list)  # lines under the image
    kind: ClassVar[str] = "image"


@dataclass
class Details:
    """A collapsible section: ``summary`` always shown, ``blocks`` on demand."""

    summary: str
    blocks: list[Block] = field(default_factory=list)
    open: bool = False
    kind: ClassVar[str] = "details"


Block = Heading | Para | Table | Items | Code | Image | Details


# ----------------------------------------------------------------------------- Markdown


def fmt_number(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals; ``nan``/``inf`` as Python spells them."""
    return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)


def fmt_signed(value: float, decimals: int) -> str:
    """:func:`fmt_number` with its sign always shown (``+1.20``), as differences are."""
    return f"{value:+.{decimals}f}" if math.isfinite(value) else str(value)


def _md(text: str) -> str:
    """Escape text for Markdown: HTML entities (renderers pass raw HTML through) and the
    characters that start emphasis, links or table cells."""
    text = html.escape(str(text), quote=False).replace("\n", " ")
    for ch in ("\\", "|", "*", "_", "[", "]", "`"):
        text = text.replace(ch, "\\" + ch)
    return text


def _md_code(text: str) -> str:
    """An inline code span that survives backticks inside ``text`` (CommonMark rule)."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_cell(cell: Cell) -> str:
    text = f"**{_md(cell.text)}**" if cell.bold and cell.text else _md(cell.text)
    return f"{text}<br>{_md(cell.sub)}" if cell.sub else text


def _md_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_md(block.text)}"
    if isinstance(block, Para):
        return f"*{_md(block.text)}*" if block.note else _md(block.text)
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md(h) for h in block.headers) + " |",
                 "|" + "|".join("---" for _ in block.headers) + "|"]
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.cells()]
        return "\n".join(lines)
    if isinstance(block, Items):
        return "\n".join(f"- {_md(text)}" + (f" {_md_code(code)}" if code else "")
                         for text, code in block.items)
    if isinstance(block, Code):
        fence = "```"
        while fence in block.text:
            fence += "`"
        return f"{fence}\n{block.text}\n{fence}"
    if isinstance(block, Image):
        lines = [f"![{_md(block.alt)}]({block.path})"]
        lines += [f"*{_md(line)}*  " if i == 0 else f"{_md(line)}  "
                  for i, line in enumerate(block.caption)]
        return "\n".join(lines)
    # Details: raw HTML around Markdown content (blank lines let the content render)
    inner = "\n\n".join(_md_block(b) for b in block.blocks)
    opened = " open" if block.open else ""
    return (f"<details{opened}><summary>{html.escape(block.summary, quote=False)}</summary>"
            f"\n\n{inner}\n\n</details>")


def to_markdown(blocks: list[Block]) -> str:
    return "\n\n".join(_md_block(b) for b in blocks) + "\n"


# ----------------------------------------------------------------------------- HTML


@lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("varcon.reporting", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.html.j2")


def _image_uri(block: Image, images: str) -> str:
    if images == "link":
        return urllib.parse.quote(block.path, safe="/")
    return "data:image/png;base64," + base64.b64encode(block.data).decode("ascii")


def to_html(blocks: list[Block], title: str,
            images: Literal["inline", "link"] = "inline") -> str:
    """The page. ``images``: ``"inline"`` embeds every PNG (one file to send around);
    ``"link"`` refers to each by its relative path (the page must stay beside its figures)."""
    if images not in ("inline", "link"):
        raise ValueError(f"images={images!r}; expected 'inline' or 'link'")
    return str(_template().render(title=title, blocks=blocks,
                                  image_uri=lambda b: _image_uri(b, images)))
