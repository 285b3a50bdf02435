"""Tag and alias names: git-tag-like, so a name is always one safe path component."""

from __future__ import annotations

import re

from machinery.registry.errors import InvalidName

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str, kind: str = "tag") -> str:
    """Return ``name`` if valid; otherwise raise ``InvalidName`` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidName(
            f"{name!r} is not a valid {kind} name: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name
