"""The job's ``job.log`` as it reaches the CI log: read to its real end, never torn.

Each poll brings the log's size and the bytes from our offset on (at most ``LOG_CHUNK``): a
full chunk means more is waiting, so the caller reads again at once instead of sleeping. A
log shorter than our offset was truncated (a requeued job whose sbatch options override
``--open-mode=append``): we start over from its beginning and say so.

The offload's own ``[slurm]`` lines go to the same CI log (a CI job's stdout and stderr are one
stream), so the log is written in whole lines: a chunk that ends inside a line keeps that part
back until the rest arrives, and a status line never lands in the middle of one of the job's
(``line 00031633 xxxx[slurm] job 14: RUNNING`` was seen). A line longer than ``HOLD_LIMIT`` is
written as it comes; ``break_line`` then ends it before a status line.
"""

from __future__ import annotations

import codecs
from typing import TextIO

from machinery.slurm.script import LOG_CHUNK

HOLD_LIMIT = 64 << 10  # characters of an unfinished line kept back


class LogStream:
    def __init__(self, out: TextIO):
        self.out = out
        self.offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # the unfinished last line, not written yet
        self._mid_line = False  # what was written does not end with a newline

    def feed(self, size: int | None, data: bytes) -> str | None:
        """Write the new bytes; return a note when the log was truncated under us."""
        if size is not None and size < self.offset and not data:
            note = f"job.log shrank from {self.offset} to {size} bytes; reading it from the start"
            self.offset = 0
            self._decoder.reset()
            self._flush_held()  # what was held belongs to the log as it was
            return note
        self.offset += len(data)
        text = self._held + self._decoder.decode(data)
        end = text.rfind("\n") + 1
        if len(text) - end > HOLD_LIMIT:
            end = len(text)
        self._write(text[:end])
        self._held = text[end:]
        return None

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._mid_line = not text.endswith("\n")

    def break_line(self) -> None:
        """Before a status line: end the line written so far (only a line past ``HOLD_LIMIT``
        is written unfinished; a held one stays held, whole)."""
        if self._mid_line:
            self._write("\n")

    def _flush_held(self) -> None:
        self._write(self._held)
        self._held = ""
        self.break_line()

    @staticmethod
    def more_waiting(data: bytes) -> bool:
        return len(data) >= LOG_CHUNK

    def finish(self) -> None:
        """The whole log is out: write what was held, and end its last line."""
        self._held += self._decoder.decode(b"", final=True)
        self._flush_held()
