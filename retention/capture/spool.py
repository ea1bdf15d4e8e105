"""Records waiting for the daemon: one JSON line each in a private file, bounded in size.

Every process that instruments a client with the same spool path shares the file, each access
under an exclusive `flock`. When the file has reached its size limit, new records are dropped
and counted (the oldest are kept: they are nearest their deadlines), with one warning.

The spool is only ever a file of its own: a symbolic link there is never followed, a pipe, a
device or a folder is never opened for good, and a file whose first line is not a record (a
`spool_path` naming some other file) is never emptied; each is warned about and left as found.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("retention.capture")
MAX_BYTES = 64 * 1024 * 1024  # about 400,000 IDs with a model name (~160 bytes a line)
BATCH = 500
_COPY = 1024 * 1024
MAX_LINE = 1024 * 1024  # a longer line is no record of ours: skipped, never read whole

Send = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class Spool:
    """A bounded JSON-lines file of records, shared between processes."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("spool_max_bytes must be positive")
        self.path, self.max_bytes = path, max_bytes
        self.dropped = 0  # records refused because the file was full, since it last emptied
        self.dropped_total = 0
        self._problem: str | None = None  # the last I/O trouble warned about

    def size(self) -> int:
        """Bytes waiting (0 when there is no file, or something that is not one of ours)."""
        try:
            found = os.lstat(self.path)
        except OSError:
            return 0
        return found.st_size if stat.S_ISREG(found.st_mode) else 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Keep `records` on disk, as many as fit; the rest are dropped and counted."""
        lines = [(json.dumps(r) + "\n").encode() for r in records]
        try:
            with self._locked(os.O_RDWR | os.O_APPEND) as handle:
                room = self.max_bytes - os.fstat(handle.fileno()).st_size
                kept = 0
                while kept < len(lines) and len(lines[kept]) <= room:
                    room -= len(lines[kept])
                    kept += 1
                handle.write(b"".join(lines[:kept]))
        except OSError as exc:
            self._warn(f"cannot write the spool {self.path}: {exc.strerror}; {len(lines)} IDs lost")
            return
        self._problem = None
        if kept < len(lines):
            self._full(len(lines) - kept)

    def drain(self, send: Send) -> bool:
        """Offer the records to `send`, oldest first, BATCH at a time; `send` gives back those
        it could not deliver, and then the drain stops and keeps them and all after them.
        True when the spool is empty at the end."""
        if self.size() == 0:
            return True
        try:
            with self._locked(os.O_RDWR) as handle:
                empty = _drain(handle, send)
        except OSError as exc:
            self._warn(f"cannot read the spool {self.path}: {exc.strerror}")
            return False
        if empty and self.dropped:
            log.warning(
                "retention capture: the spool is empty again; %d IDs were dropped while it "
                "was full",
                self.dropped,
            )
            self.dropped = 0
        return empty

    def _full(self, count: int) -> None:
        """Count records refused for want of room; warn on the first of a run."""
        if not self.dropped:
            log.warning(
                "retention capture: the spool %s is full (%d bytes, spool_max_bytes): new IDs "
                "are dropped, and counted, until the daemon takes those that wait",
                self.path,
                self.max_bytes,
            )
        self.dropped += count
        self.dropped_total += count

    def _warn(self, problem: str) -> None:
        """One warning per distinct trouble, not one per try."""
        if problem != self._problem:
            self._problem = problem
            log.warning("retention capture: %s", problem)

    @contextmanager
    def _locked(self, flags: int) -> Iterator[IO[bytes]]:
        """The spool opened (created 0600, made 0600 if it was not) under an exclusive lock."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # never through a symbolic link, never waiting on a pipe
        flags |= os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, "it is a symbolic link, never followed") from None
            if exc.errno == errno.ENXIO:  # a pipe no one reads
                raise OSError(exc.errno, "it is not a regular file") from None
            raise
        with open(fd, "ab" if flags & os.O_APPEND else "r+b") as handle:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise OSError(errno.EINVAL, "it is not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _foreign(fd):  # read under the lock: a drain rewrites the file from its start
                raise OSError(errno.EINVAL, "its first line is not a record: it is another file")
            mode = stat.S_IMODE(found.st_mode)
            if mode & 0o077:
                os.fchmod(fd, 0o600)
                log.warning(
                    "retention capture: the spool %s was open to others (%o); made it 0600",
                    self.path,
                    mode,
                )
            yield handle


def _foreign(fd: int) -> bool:
    """Whether the open file is something other than a spool: its first line, complete, is
    not a record (a lone first line cut short by a crash is a torn write of ours)."""
    head = os.pread(fd, 65536, 0)
    line, newline, _ = head.partition(b"\n")
    if not newline:
        return bool(head) and not head.startswith(b"{")
    return _record(line, quiet=True) is None


def _drain(handle: IO[bytes], send: Send) -> bool:
    """Send the file's records batch by batch; on a failure, move what is left to the front."""
    while True:
        lines = _read_lines(handle, BATCH)
        if not lines:
            handle.truncate(0)
            return True
        parsed = [(line, record) for line in lines if (record := _record(line)) is not None]
        left = send([record for _, record in parsed]) if parsed else []
        if left:
            keep = {id(record) for record in left}
            head = b"".join(line for line, record in parsed if id(record) in keep)
            _compact(handle, head, handle.tell())
            return False


def _read_lines(handle: IO[bytes], count: int) -> list[bytes]:
    """Up to `count` lines from where the handle stands."""
    lines: list[bytes] = []
    while len(lines) < count:
        line = handle.readline(MAX_LINE)
        if not line:
            break
        if len(line) == MAX_LINE and not line.endswith(b"\n"):  # too long to be ours
            while (rest := handle.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                pass
            log.warning("retention capture: skipped a line of the spool that is too long")
            continue
        lines.append(line if line.endswith(b"\n") else line + b"\n")
    return lines


def _record(line: bytes, *, quiet: bool = False) -> dict[str, Any] | None:
    """One spooled record; a torn or foreign line is skipped."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if isinstance(record, dict):
        return record
    if not quiet:
        log.warning("retention capture: skipped a line of the spool that is not a record")
    return None


def _compact(handle: IO[bytes], head: bytes, rest_at: int) -> None:
    """Make the file `head` followed by its bytes from `rest_at` on, in place (the kept part
    is never longer than what came before `rest_at`, so nothing unread is overwritten)."""
    handle.seek(0)
    handle.write(head)
    write_at, read_at = len(head), rest_at
    while True:
        handle.seek(read_at)
        chunk = handle.read(_COPY)
        if not chunk:
            break
        read_at += len(chunk)
        handle.seek(write_at)
        handle.write(chunk)
        write_at += len(chunk)
    handle.truncate(write_at)
