"""Escaping for the Markdown report and the PR comment (GFM as GitLab, Forgejo and GitHub read it).

Every string that comes from a user (metric and param names and values, params.yaml's report
section, card fields, branch names, file names) goes through one of these, so a value such as
``<img src=x onerror=alert(1)>`` is shown as text: never a tag, never a broken table or code span.
"""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation. These are the characters that can
# start markup inline: emphasis, links and images, raw HTML and entities, code spans, GFM
# strikethrough and table cells. A backslash is escaped first so it cannot escape our escapes.
_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~])")


def text(value: str) -> str:
    """``value`` as literal inline text (also safe inside a GFM table cell)."""
    one_line = " ".join(str(value).splitlines())
    return _SPECIAL.sub(r"\\\1", one_line)


def code(value: str) -> str:
    """``value`` as one code span, whatever backticks it holds: the fence is one backtick longer
    than the longest run inside, padded when the content starts or ends with a backtick. Not for
    table cells (GFM splits a row at a ``|`` before it reads code spans): use ``text`` there."""
    one_line = " ".join(str(value).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", one_line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") or not one_line.strip() else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"
