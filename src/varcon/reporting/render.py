"""One document model, two renderings: Markdown (images by relative path) and an HTML page,
self-contained by default (images inlined as base64 data URIs) or, with ``images="link"``,
pointing at the PNGs by relative path like the Markdown (a page of kilobytes instead of
megabytes, for reports kept under version control). Every string is escaped by the renderer,
so text read from run files (class names, config values, paths) can never inject markup."""

from __future__ import annotations

import base64
import html
import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Block", "Code", "Heading", "Image", "Items", "Para", "Table", "to_html",
           "to_markdown"]


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str
    note: bool = False  # rendered smaller / in italics


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Items:
    """A bullet list; each item is text optionally followed by a command in code style."""

    items: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass
class Code:
    text: str


@dataclass
class Image:
    path: str  # relative to the Markdown file
    data: bytes  # the PNG, inlined in HTML (unless the page links its images)
    alt: str
    caption: list[str] = field(default_factory=list)  # lines under the image


Block = Heading | Para | Table | Items | Code | Image


# ----------------------------------------------------------------------------- Markdown


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


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {_md(block.text)}")
        elif isinstance(block, Para):
            out.append(f"*{_md(block.text)}*" if block.note else _md(block.text))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md(h) for h in block.headers) + " |",
                     "|" + "|".join("---" for _ in block.headers) + "|"]
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Items):
            out.append("\n".join(
                f"- {_md(text)}" + (f" {_md_code(code)}" if code else "")
                for text, code in block.items))
        elif isinstance(block, Code):
            fence = "```"
            while fence in block.text:
                fence += "`"
            out.append(f"{fence}\n{block.text}\n{fence}")
        elif isinstance(block, Image):
            lines = [f"![{_md(block.alt)}]({block.path})"]
            lines += [f"*{_md(line)}*  " if i == 0 else f"{_md(line)}  "
                      for i, line in enumerate(block.caption)]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .15em; margin-top: 2em; }
.scroll { overflow-x: auto; margin: .8em 0; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: .3em .55em; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
tr:nth-child(even) td { background: #fafbfc; }
code, pre { background: #f4f4f4; border-radius: 3px; font-size: 0.9em; }
code { padding: .05em .3em; }
pre { padding: .6em; overflow-x: auto; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.88em; color: #444; }
.note { font-size: 0.9em; color: #555; font-style: italic; }
"""


def _h(text: str) -> str:
    return html.escape(str(text), quote=True)


def to_html(blocks: list[Block], title: str,
            images: Literal["inline", "link"] = "inline") -> str:
    """The page. ``images``: ``"inline"`` embeds every PNG (one file to send around);
    ``"link"`` refers to each by its relative path (the page must stay beside its figures)."""
    if images not in ("inline", "link"):
        raise ValueError(f"images={images!r}; expected 'inline' or 'link'")
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{_h(block.text)}</h{level}>")
        elif isinstance(block, Para):
            cls = ' class="note"' if block.note else ""
            body.append(f"<p{cls}>{_h(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_h(h)}</th>" for h in block.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>"
                           for row in block.rows)
            body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                        f"<tbody>{rows}</tbody></table></div>")
        elif isinstance(block, Items):
            items = "".join(
                f"<li>{_h(text)}" + (f" <code>{_h(code)}</code>" if code else "") + "</li>"
                for text, code in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Code):
            body.append(f"<pre>{_h(block.text)}</pre>")
        elif isinstance(block, Image):
            if images == "link":
                uri = urllib.parse.quote(block.path, safe="/")
            else:
                uri = "data:image/png;base64," + base64.b64encode(block.data).decode("ascii")
            caption = "<br>".join(
                (f"<strong>{_h(line)}</strong>" if i == 0 else _h(line))
                for i, line in enumerate(block.caption))
            body.append(f'<figure><img src="{_h(uri)}" alt="{_h(block.alt)}">'
                        f"<figcaption>{caption}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_h(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
