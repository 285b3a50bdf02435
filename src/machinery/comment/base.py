"""What every forge back end does: find the marked comment, upload the plots, create or update."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from machinery.report.inputs import Image

# image file name -> absolute URL on the forge  ->  the comment's Markdown
Render = Callable[[dict[str, str]], str]

# A plot bigger than this is left out rather than uploaded (forges cap attachments; a report
# plot is tens of KiB).
MAX_IMAGE_BYTES = 10 << 20

# A transient answer (a proxy's 5xx while the forge restarts, a dropped connection) is retried
# with python-gitlab's own back-off, 0.1 s doubling: 6 retries wait at most 6.3 s per call, so a
# forge that stays down costs the job seconds, not minutes. Every call is retried, creates too:
# a create the forge did but answered 5xx leaves a duplicate that the next list removes.
MAX_RETRIES = 6
TRANSIENT = frozenset({500, 502, 503, 504})


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based), as python-gitlab waits."""
    return float(2**attempt * 0.1)


def retried() -> str:
    """For an error line: how long the transient answer was retried."""
    return f"after {MAX_RETRIES} retries over {sum(map(backoff, range(MAX_RETRIES))):.1f} s"


@dataclass(frozen=True)
class Posted:
    action: str  # "created" | "updated"
    where: str  # a URL or a description a reader can follow


class Backend(Protocol):
    def publish(self, marker: str, images: list[Image], render: Render) -> Posted: ...


def digest(image: Image) -> str:
    return hashlib.sha256(image.path.read_bytes()).hexdigest()


def tagged(url: str, sha256: str) -> str:
    """The uploaded image's URL with its content hash in the fragment: hidden from readers, never
    sent to the server, and read back by ``uploaded`` on the next push."""
    return f"{url}#sha256={sha256}"


_TAGGED = re.compile(r"\]\((\S+?)#sha256=([0-9a-f]{64})\)")


def uploaded(body: str) -> dict[str, str]:
    """sha256 -> URL (without the fragment) of every plot an earlier run of ours linked."""
    return {sha: url for url, sha in _TAGGED.findall(body)}


def converge(ids: list[int], mine: int | None) -> tuple[int, list[int]]:
    """Which marked comment stays (the oldest) and which go: two jobs that both found none and
    both created one agree on the same survivor, whichever lists first."""
    ordered = sorted(set(ids) | ({mine} if mine is not None else set()))
    return ordered[0], ordered[1:]
