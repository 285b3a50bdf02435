"""Read Markdown as GitLab/Forgejo/GitHub do: CommonMark + GFM tables (markdown-it-py)."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.token import Token


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def tables(md: str) -> list[list[list[str]]]:
    """Every table as rows of cell texts (the header row first)."""
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
            row[-1] = tok.content
        elif tok.type == "tr_close":
            out[-1].append(row)
    return out


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
