"""What every forge back end does: find the marked comment, upload the plots, create or update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from machinery.report.inputs import Image

# image file name -> absolute URL on the forge  ->  the comment's Markdown
Render = Callable[[dict[str, str]], str]

# A plot bigger than this is left out rather than uploaded (forges cap attachments; a report
# plot is tens of KiB).
MAX_IMAGE_BYTES = 10 << 20


@dataclass(frozen=True)
class Posted:
    action: str  # "created" | "updated"
    where: str  # a URL or a description a reader can follow


class Backend(Protocol):
    def publish(self, marker: str, images: list[Image], render: Render) -> Posted: ...
