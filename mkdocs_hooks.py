"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

Links that leave ``docs/``. The guides are written to read on GitHub, so a link may point at a
file elsewhere in the repository (``[BENCHMARKS.md](../BENCHMARKS.md)``). MkDocs only knows
the files under ``docs/`` and fails ``mkdocs build --strict`` on such a link. Before MkDocs
checks the links, this hook brings every existing file outside ``docs/`` that the site links to
into the site, under ``repository/<its path in the repository>`` (a Markdown file as a page,
anything else copied as it is; a link to a folder means its ``README.md``), and points the link
there. It does the same for the pages it brings in, so their own links work too, and for
``repository/<path>`` entries of the nav (``BENCHMARKS.md`` is in the nav that way). The
Markdown sources are not changed: they still read correctly on GitHub.

A link to a file that does not exist, or above the repository root, is left as it is, so
MkDocs still reports it and the strict build still fails on it.

API pages. The docstrings use Sphinx roles (``:func:`~varcon.losses.varcon_loss```), which
Markdown renders as ``:func:`` followed by code. On the pages under ``api/`` the hook turns each
role into its code alone (``~a.b.c`` shows as ``c``), linked to the object when the site
documents it: a short name is looked up from the object whose docstring holds it, as Sphinx
would (an optional mkdocs-autorefs cross-reference: no link and no warning when the object is
not on the site).
A paragraph ending in reStructuredText's literal-block marker ``::`` ends in ``:``.

Site-only blocks. A block between a line ``<!-- site-only`` and a line ``-->`` is hidden on
GitHub (an HTML comment) and shown on the site: the tutorials' pages include their scripts
that way (pymdownx.snippets), where GitHub readers follow the link to the file instead.
"""

from __future__ import annotations

import html
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

SITE_FOLDER = "repository"  # where files from outside docs/ live in the site

# An inline link or image: [text](target "title") or ![alt](<target>). The text may span lines
# (not a blank one) and hold one level of brackets; the target is what the hook rewrites.
_LINK = re.compile(
    r"(?P<head>!?\[(?:[^\[\]\n]|\n(?![ \t]*\n)|\[[^\[\]\n]*\])*\]\(\s*)"
    r"(?P<target><[^<>\n]*>|[^()\s<>]+)"
    r"(?P<tail>(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\s*\))"
)
_LIST_ITEM = re.compile(r"^(?P<indent> {0,3})(?P<marker>[-*+]|\d{1,9}[.)])[ \t]")
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_ROLE = re.compile(
    r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const|type):"
    r"<code>(?P<tilde>~?)(?P<name>[A-Za-z_][\w.]*)(?:\(\))?</code>"
)
_MARKED_ROLE = re.compile(
    r'<varcon-role name="(?P<name>[\w.]+)" context="(?P<context>[\w.]*)">'
    r"(?P<shown>.*?)</varcon-role>"
)
_OBJECT_ID = re.compile(r'\bid="(varcon(?:\.\w+)+)"')
_LITERAL_MARKER = re.compile(r"\s*::</p>")
_SITE_ONLY = re.compile(r"^<!-- site-only[ \t]*\n(?P<body>.*?)\n-->[ \t]*$", re.M | re.S)

# Repository layout, filled by on_config.
_root = Path()
_docs_prefix = "docs/"
# site path of a page or file brought in -> its path in the repository
_brought_in: dict[str, str] = {}
# the objects the API pages document (their anchors), filled by on_page_content
_documented: set[str] = set()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    global _root, _docs_prefix
    _root = Path(config.config_file_path).resolve().parent
    docs = Path(config.docs_dir).resolve()
    try:
        _docs_prefix = docs.relative_to(_root).as_posix() + "/"
    except ValueError as exc:
        raise PluginError(f"docs_dir {docs} is not inside {_root}") from exc
    # pymdownx.snippets reads base_path relative to the working directory: make it relative
    # to mkdocs.yml, so that `mkdocs build -f path/to/mkdocs.yml` works from anywhere.
    snippets = config.mdx_configs.get("pymdownx.snippets")
    if snippets and "base_path" in snippets:
        paths = snippets["base_path"]
        snippets["base_path"] = [str(_root / p) for p in ([paths] if isinstance(paths, str)
                                                           else paths)]
    return config


def _split(target: str) -> tuple[str, str] | None:
    """(path, '#anchor' or '') of a relative link to a file, or None for any other link."""
    target = target[1:-1] if target.startswith("<") else target
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith(("/", "\\", "#")) or not parts.path:
        return None
    return unquote(parts.path), f"#{parts.fragment}" if parts.fragment else ""


def _resolve(page_repo_path: str, link_path: str) -> str | None:
    """The repository path a link of the page at ``page_repo_path`` points to: an existing
    file (a folder with a README.md counts as that file), or None."""
    path = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), link_path))
    if path.startswith("../") or path == "..":
        return None
    full = _root / path
    if full.is_dir() and (full / "README.md").is_file():
        return posixpath.join(path, "README.md")
    return path if full.is_file() else None


def _chunks(markdown: str) -> list[tuple[bool, str]]:
    """The text as runs of (inside a fenced code block, lines), fences included."""
    chunks: list[tuple[bool, str]] = []
    fence = ""
    for line in markdown.splitlines(keepends=True):
        match = _FENCE.match(line)
        toggles = match is not None and (not fence or match.group(1).startswith(fence))
        code = bool(fence) or toggles
        if match is not None and toggles:
            fence = "" if fence else match.group(1)[:3]
        if chunks and chunks[-1][0] == code:
            chunks[-1] = (code, chunks[-1][1] + line)
        else:
            chunks.append((code, line))
    return chunks


def _outside_links(markdown: str) -> list[str]:
    """The link paths of a Markdown text, outside fenced code blocks."""
    return [split[0] for code, text in _chunks(markdown) if not code
            for link in _LINK.finditer(text)
            if (split := _split(link.group("target"))) is not None]


def _bring_in(repo_path: str, config: MkDocsConfig, files: Files) -> File | None:
    site_path = f"{SITE_FOLDER}/{repo_path}"
    if site_path in _brought_in:
        return None
    if files.get_file_from_path(site_path) is not None:
        raise PluginError(f"docs/{site_path} exists; {SITE_FOLDER}/ is the hook's folder")
    _brought_in[site_path] = repo_path
    file = File.generated(config, site_path, abs_src_path=str(_root / repo_path))
    files.append(file)
    return file


def _nav_paths(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_paths(value)]
    if isinstance(nav, list):
        return [p for value in nav for p in _nav_paths(value)]
    return []


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Bring in the files outside docs/ that the nav or a page links to, transitively."""
    _brought_in.clear()
    _documented.clear()
    todo: list[File] = []
    for nav_path in _nav_paths(config.nav):
        repo_path = nav_path.removeprefix(f"{SITE_FOLDER}/")
        if repo_path != nav_path and (_root / repo_path).is_file():
            file = _bring_in(repo_path, config, files)
            if file is not None and file.is_documentation_page():
                todo.append(file)
    todo += list(files.documentation_pages())
    while todo:
        page = todo.pop()
        repo_path = _repo_path(page.src_uri)
        markdown = Path(page.abs_src_path or "").read_text(encoding="utf-8-sig")
        for link_path in _outside_links(markdown):
            target = _resolve(repo_path, link_path)
            if target is None or target.startswith(_docs_prefix):
                continue  # missing (MkDocs reports it) or inside docs/ (MkDocs handles it)
            file = _bring_in(target, config, files)
            if file is not None and file.is_documentation_page():
                todo.append(file)
    return files


def _repo_path(src_uri: str) -> str:
    return _brought_in.get(src_uri) or _docs_prefix + src_uri


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Show the site-only blocks, point the links that leave docs/ at the files brought in,
    and read GitHub's list syntax (see below)."""
    src_uri = page.file.src_uri
    repo_path = _repo_path(src_uri)
    site_dir = posixpath.dirname(src_uri)

    def rewrite(link: re.Match[str]) -> str:
        split = _split(link.group("target"))
        if split is None:
            return link.group(0)
        target = _resolve(repo_path, split[0])
        if target is None:
            return link.group(0)  # left for MkDocs to report
        if target.startswith(_docs_prefix):
            site_path = target[len(_docs_prefix):]
        elif f"{SITE_FOLDER}/{target}" in _brought_in:
            site_path = f"{SITE_FOLDER}/{target}"
        else:
            return link.group(0)
        new = posixpath.relpath(site_path, site_dir or ".") + split[1]
        if "(" in new or ")" in new or " " in new:
            new = f"<{new}>"
        return link.group("head") + new + link.group("tail")

    markdown = _SITE_ONLY.sub(lambda m: m.group("body"), markdown)
    out: list[str] = []
    previous = ""  # the previous line
    in_list = False
    for code, text in _chunks(markdown):
        if code:
            out.append(text)
            previous = text.rstrip("\n").rpartition("\n")[2]
            continue
        lines: list[str] = []
        for line in text.splitlines(keepends=True):
            # GitHub's lists as Python-Markdown wants them: a list may follow a paragraph
            # line directly there (here it needs a blank line), and a nested item may be
            # indented by 2 or 3 spaces (here 4).
            item = _LIST_ITEM.match(line)
            if item:
                indent = len(item.group("indent"))
                interrupts = item.group("marker") in "-*+" or item.group("marker")[:-1] == "1"
                if (indent == 0 and interrupts and not in_list and previous.strip()
                        and previous[0] not in "|<"):
                    lines.append("\n")
                elif indent in (2, 3) and in_list:
                    line = "    " + line[indent:]
                in_list = True
            elif line.strip() and not line.startswith((" ", "\t")):
                in_list = False
            lines.append(line)
            previous = line
        out.append(_LINK.sub(rewrite, "".join(lines)))
    return "".join(out)


def _qualify(name: str, context: str) -> str:
    """The documented object a role's ``name`` means, looked up as Python would from the
    object whose docstring holds it (``context``): itself, its parents, then a unique
    documented object of that name anywhere; ``name`` itself when none is found."""
    if name in _documented:
        return name
    scope = context
    while scope:
        if f"{scope}.{name}" in _documented:
            return f"{scope}.{name}"
        scope = scope.rpartition(".")[0]
    tail = "." + name.rpartition(".")[2] if "." in name else "." + name
    matches = [ident for ident in _documented if ident.endswith(tail)]
    return matches[0] if len(matches) == 1 else name


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Mark the Sphinx roles of the API pages (resolved in on_env, once every API page has
    been rendered) and drop ``::``; note the objects the page documents."""
    if not page.file.src_uri.startswith("api/"):
        return content
    ids = [(m.start(), m.group(1)) for m in _OBJECT_ID.finditer(content)]
    _documented.update(ident for _, ident in ids)

    def mark(match: re.Match[str]) -> str:
        context = ""
        for position, ident in ids:  # the object whose docstring this is: the last heading
            if position > match.start():
                break
            context = ident
        name = match.group("name")
        shown = name.rsplit(".", 1)[-1] if match.group("tilde") else name
        return (f'<varcon-role name="{name}" context="{context}">'
                f"<code>{html.escape(shown)}</code></varcon-role>")

    return _LITERAL_MARKER.sub(":</p>", _ROLE.sub(mark, content))


def on_env(env: Any, config: MkDocsConfig, files: Files) -> Any:
    """Turn each role into an optional mkdocs-autorefs cross-reference to the object it means
    (autorefs, whose on_env runs later, links it, or leaves the code alone when the object is
    not on the site)."""

    def resolve(match: re.Match[str]) -> str:
        identifier = _qualify(match.group("name"), match.group("context"))
        return f'<autoref identifier="{identifier}" optional>{match.group("shown")}</autoref>'

    for file in files.documentation_pages():
        if file.page is not None and file.page.content and "<varcon-role " in file.page.content:
            file.page.content = _MARKED_ROLE.sub(resolve, file.page.content)
    return env
