"""Read Markdown as GitLab/Forgejo/GitHub do: markdown-it-py's GFM-like preset (CommonMark with
raw HTML on, GFM tables and strikethrough; linkify off: it needs an extra package and only turns
bare URLs into links)."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token


def _parser() -> MarkdownIt:
    return MarkdownIt("gfm-like", options_update={"linkify": False})


def tables(md: str) -> list[list[list[str]]]:
    """Every table as rows of cell texts as rendered (the header row first)."""
    out: list[list[list[str]]] = []
    row: list[str] = []
    in_cell = False
    for tok in _parser().parse(md):
        if tok.type == "table_open":
            out.append([])
        elif tok.type == "tr_open":
            row = []
        elif tok.type in ("th_open", "td_open"):
            in_cell = True
            row.append("")
        elif tok.type in ("th_close", "td_close"):
            in_cell = False
        elif tok.type == "inline" and in_cell:
            row[-1] = plain(tok)
        elif tok.type == "tr_close":
            out[-1].append(row)
    return out


def plain(inline: Token) -> str:
    """The text a reader sees in an inline run: escapes resolved, code spans' content, raw HTML
    kept as written (so a test notices it)."""
    return "".join(
        child.content
        for child in inline.children or []
        if child.type in ("text", "code_inline", "html_inline")
    )


def table_with_header(md: str, *header: str) -> list[list[str]]:
    """The one table whose header row starts with ``header``, header row included."""
    found = [t for t in tables(md) if t and t[0][: len(header)] == list(header)]
    assert len(found) == 1, f"expected one table headed {header}, found {len(found)}"
    return found[0]


def image_urls(md: str) -> list[str]:
    urls: list[str] = []

    def walk(tokens: list[Token]) -> None:
        for tok in tokens:
            if tok.type == "image":
                urls.append(str(tok.attrs.get("src", "")))
            if tok.children:
                walk(tok.children)

    walk(_parser().parse(md))
    return urls


def html(md: str) -> str:
    return str(_parser().render(md))


def raw_html(md: str) -> list[str]:
    """Every piece of raw HTML the Markdown passes through to the page (blocks and inline)."""
    found: list[str] = []

    def walk(tokens: list[Token]) -> None:
        for tok in tokens:
            if tok.type in ("html_block", "html_inline"):
                found.append(tok.content.strip())
            if tok.children:
                walk(tok.children)

    walk(_parser().parse(md))
    return found


def code_spans(md: str) -> list[str]:
    out: list[str] = []

    def walk(tokens: list[Token]) -> None:
        for tok in tokens:
            if tok.type == "code_inline":
                out.append(tok.content)
            if tok.children:
                walk(tok.children)

    walk(_parser().parse(md))
    return out


def alignments(md: str) -> list[list[str]]:
    """Every table's column alignments as the renderer reads its delimiter row: ``right`` for
    ``---:``, ``center``, or ``""`` (left, the default), from the header cells' style."""
    out: list[list[str]] = []
    in_header = False
    for tok in _parser().parse(md):
        if tok.type == "table_open":
            out.append([])
        elif tok.type == "thead_open":
            in_header = True
        elif tok.type == "thead_close":
            in_header = False
        elif tok.type == "th_open" and in_header:
            style = str(tok.attrs.get("style", ""))
            out[-1].append(style.removeprefix("text-align:") if style else "")
    return out


def links(md: str) -> list[tuple[str, str]]:
    """Every link as (text, href)."""
    found: list[tuple[str, str]] = []

    def walk(tokens: list[Token]) -> None:
        text: list[str] | None = None
        href = ""
        for tok in tokens:
            if tok.type == "link_open":
                text, href = [], str(tok.attrs.get("href", ""))
            elif tok.type == "link_close" and text is not None:
                found.append(("".join(text), href))
                text = None
            elif text is not None and tok.type in ("text", "code_inline"):
                text.append(tok.content)
            if tok.children:
                walk(tok.children)

    walk(_parser().parse(md))
    return found


def paragraphs(md: str) -> list[str]:
    """Every paragraph's text as a reader sees it (``plain``: escapes resolved, code spans'
    content without their backticks)."""
    tokens = _parser().parse(md)
    return [plain(tokens[i + 1]) for i, t in enumerate(tokens) if t.type == "paragraph_open"]
