"""The repository: placeholders a fork must replace in ``k8s/`` (named with file and line)."""

from __future__ import annotations

import re
from pathlib import Path

from machinery.doctor.model import Check, Env, Failed, NotConfigured, Row, ok

# What the template ships for a fork to replace: marked lines, the example domain, and digests
# of all zeros (an overlay nobody has bumped yet: Argo CD cannot pull that image).
PATTERNS = {
    "FILL IN": re.compile(r"\bFILL IN\b"),
    "example.com": re.compile(r"\bexample\.com\b"),
    "all-zero digest": re.compile(r"sha256:0{64}\b"),
}
SHOWN = 10  # lines named in the row; the rest are counted


def scan(root: Path) -> list[str]:
    """``file:line (what)`` for every placeholder under ``root``, in path order."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue  # binary or unreadable: nothing a fork edits by hand
        for number, line in enumerate(text.splitlines(), 1):
            kinds = [name for name, pattern in PATTERNS.items() if pattern.search(line)]
            if kinds:
                found.append(f"{path.relative_to(root.parent)}:{number} ({', '.join(kinds)})")
    return found


def run(env: Env) -> list[Row]:
    root = Path.cwd() / "k8s"
    if not root.is_dir():
        raise NotConfigured("no k8s/ here (run mlops doctor at the repository root)")
    found = scan(root)
    if found:
        more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
        raise Failed(
            f"{len(found)} placeholder(s) left: {'; '.join(found[:SHOWN])}{more}",
            "replace them with your fork's values (docs/deploy.md); the first main pipeline "
            "pins the staging digest, promote pins prod's",
        )
    return [ok("repository: placeholders", "none left in k8s/")]


CHECKS = [Check("repository: placeholders", 5.0, run)]
