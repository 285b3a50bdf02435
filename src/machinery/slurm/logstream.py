"""The job's ``job.log`` as it reaches the CI log: read to its real end, never torn.

Each poll brings the log's size and the bytes from our offset on (at most ``LOG_CHUNK``): a
full chunk means more is waiting, so the caller reads again at once instead of sleeping. A
log shorter than our offset was truncated (a requeued job whose sbatch options override
``--open-mode=append``): we start over from its beginning and say so.
"""

from __future__ import annotations

import codecs
from typing import TextIO

from machinery.slurm.script import LOG_CHUNK


class LogStream:
    def __init__(self, out: TextIO):
        self.out = out
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, size: int | None, data: bytes) -> str | None:
        """Write the new bytes; return a note when the log was truncated under us."""
        note = None
        if size is not None and size < self.offset and not data:
            note = f"job.log shrank from {self.offset} to {size} bytes; reading it from the start"
            self.offset = 0
            self._decoder.reset()
            return note
        self.offset += len(data)
        text = self._decoder.decode(data)
        if text:
            self.out.write(text)
            self.out.flush()
        return note

    @staticmethod
    def more_waiting(data: bytes) -> bool:
        return len(data) >= LOG_CHUNK

    def finish(self) -> None:
        text = self._decoder.decode(b"", final=True)
        if text:
            self.out.write(text)
            self.out.flush()
