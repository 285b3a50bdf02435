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
