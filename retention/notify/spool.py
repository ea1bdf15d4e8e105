"""A webhook's notifications not delivered yet: one JSON line each in a private file, oldest
first, bounded in size, shared by every process with the same `spool_file`.

Every notification is written here (and flushed to disk) before it is sent, and leaves once
the receiver took it, so a receiver that is down gets them all, in order, once it is back, and
one spooled before a crash or a power cut is sent after the restart: at least once from the
moment it is spooled. Before that it waits in the sink's memory queue while the worker is busy
delivering (about a second, up to `timeout` while a request hangs), and a crash loses it; the
audit trail has the event.

`FILE.pos` holds how far delivery has got (the file's inode and a byte offset, rewritten in
place after each one; not flushed to disk but before the file is emptied, so a power cut makes
some be sent again, never skipped); the delivered head is cut off once it is large, by copying
the rest to a new file. Two locks: `FILE.lock`, held for each short read or write, and
`FILE.drain`, held by the one process delivering, so no two send the same line. When the file
holds `max_bytes` waiting, the oldest are kept and new ones dropped and counted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from retention.files import fsync_folder, make_private

COMPACT_BYTES = 1024 * 1024  # a delivered head this large (and half the file) is cut off
MAX_LINE = 1024 * 1024  # a longer line is no notification of ours: skipped
_POS = "{:20d} {:20d}\n"  # inode, offset: fixed width, rewritten in place with one pwrite
_COPY = 1024 * 1024
_SCAN = 64 * 1024  # read at a time looking for the end of the first waiting line


class Spool:
    """The file behind one webhook."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self._pos = Path(f"{path}.pos")
        self._counted: tuple[int, int, int, int] | None = None  # (inode, size, offset, lines)

    def append(self, lines: list[str]) -> int:
        """Add `lines` after what waits, as many as fit under `max_bytes`; how many went in
        (the rest are the caller's to count as dropped). OSError when the file cannot be
        written."""
        data = [(line + "\n").encode() for line in lines]
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            room = self.max_bytes - (size - self._offset(fd, size))
            kept = 0
            while kept < len(data) and len(data[kept]) <= room:
                room -= len(data[kept])
                kept += 1
            if kept:
                if size and os.pread(fd, 1, size - 1) != b"\n":  # a crash's torn last line
                    data.insert(0, b"\n")
                    kept += 1
                _write_all(fd, b"".join(data[:kept]), size)
                os.fdatasync(fd)  # spooled means on disk: it survives a power cut too
                kept -= data[0] == b"\n"
        return kept

    def peek(self, count: int) -> list[tuple[str, int]]:
        """Up to `count` waiting lines, oldest first, each with the offset just after it."""
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            offset = self._offset(fd, size)
            found: list[tuple[str, int]] = []
            with os.fdopen(os.dup(fd), "rb") as handle:
                handle.seek(offset)
                while len(found) < count:
                    raw = handle.readline(MAX_LINE)
                    if not raw.endswith(b"\n"):  # the end, a torn last line, or too long
                        if len(raw) < MAX_LINE:
                            break
                        while (rest := handle.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                            pass
                        found.append(("", handle.tell()))  # skipped by the caller
                        continue
                    found.append((raw[:-1].decode("utf-8", "replace"), handle.tell()))
            return found

    def advance(self, offset: int) -> None:
        """Delivery has got to `offset` (as `peek` gave it): the lines before it are gone for
        good. When nothing is left the file is emptied; else offsets stay valid until `tidy`."""
        with self._locked() as fd:
            ino, size = os.fstat(fd).st_ino, os.fstat(fd).st_size
            if offset >= size:
                # all delivered: empty the file, the position first and on disk, so no crash
                # or power cut leaves an old position over lines spooled later (a crash between
                # the two resends, never skips)
                self._write_pos(ino, 0, sync=True)
                os.ftruncate(fd, 0)
            else:
                self._write_pos(ino, offset)

    def tidy(self) -> None:
        """Cut off the delivered head once it is large and half the file (offsets `peek`
        gave before this no longer count)."""
        with self._locked() as fd:
            size = os.fstat(fd).st_size
            offset = self._offset(fd, size)
            if offset >= COMPACT_BYTES and offset * 2 >= size:
                self._compact(fd, offset)

    def waiting(self) -> int:
        """How many lines wait (counted again only when the file or position changed)."""
        try:
            with self._locked() as fd:
                found = os.fstat(fd)
                offset = self._offset(fd, found.st_size)
                key = (found.st_ino, found.st_size, offset)
                if self._counted is None or self._counted[:3] != key:
                    self._counted = (*key, _count_lines(fd, offset, found.st_size))
                return self._counted[3]
        except OSError:
            return 0

    def has_waiting(self) -> bool:
        """Whether a whole line waits: one ending in a newline after the delivered position
        (a crash's torn last line alone is not one; `peek` would give nothing). No lock."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            found = os.fstat(fd)
            position = self._read_pos(found.st_ino, found.st_size)
            while position < found.st_size:
                chunk = os.pread(fd, min(_SCAN, found.st_size - position), position)
                if not chunk:
                    return False
                if b"\n" in chunk:
                    return True
                position += len(chunk)
            return False
        except OSError:
            return False
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def draining(self) -> Iterator[bool]:
        """Hold `FILE.drain` when no other process does: True when this one delivers."""
        fd = _open_private(Path(f"{self.path}.drain"), os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The spool file (made when missing, 0600, never through a symbolic link) under
        `FILE.lock`."""
        lock = _open_private(Path(f"{self.path}.lock"), os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd = _open_private(self.path, os.O_RDWR)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            os.close(lock)

    def _offset(self, fd: int, size: int) -> int:
        """Where the waiting lines start in the file open as `fd`."""
        return self._read_pos(os.fstat(fd).st_ino, size)

    def _read_pos(self, ino: int, size: int) -> int:
        """The delivered offset kept for inode `ino`; 0 for another file (a new or compacted
        one) or a position past the end (a crash between the two writes of `advance`)."""
        try:
            saved_ino, offset = (int(n) for n in self._pos.read_text().split())
        except (OSError, ValueError):
            return 0
        return offset if saved_ino == ino and 0 <= offset <= size else 0

    def _write_pos(self, ino: int, offset: int, *, sync: bool = False) -> None:
        """Keep the delivered offset, in place (flushed to disk with `sync`)."""
        fd = _open_private(self._pos, os.O_WRONLY)
        try:
            os.pwrite(fd, _POS.format(ino, offset).encode(), 0)
            if sync:
                os.fdatasync(fd)
        finally:
            os.close(fd)

    def _compact(self, fd: int, offset: int) -> None:
        """Copy the lines after `offset` to a new file and rename it over the old one (whose
        position, keyed by its inode, stops counting)."""
        folder = self.path.parent
        new, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            position = offset
            while chunk := os.pread(fd, _COPY, position):
                _write_all(new, chunk, position - offset)
                position += len(chunk)
            os.fsync(new)
            os.replace(temporary, self.path)
            self._write_pos(os.fstat(new).st_ino, 0)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        finally:
            os.close(new)
        fsync_folder(folder)


def _open_private(path: Path, flags: int) -> int:
    """Open a file of ours (created 0600, a group- or world-readable one made 0600 with a
    warning), never through a symbolic link and never anything but a regular file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(exc.errno, "it is a symbolic link, never followed", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "it is not a regular file", str(path))
    make_private(fd, path)
    return fd


def _count_lines(fd: int, start: int, end: int) -> int:
    """Newlines between two offsets."""
    count, position = 0, start
    while position < end and (chunk := os.pread(fd, min(_COPY, end - position), position)):
        count += chunk.count(b"\n")
        position += len(chunk)
    return count


def _write_all(fd: int, data: bytes, at: int) -> None:
    """pwrite until every byte is out."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, at)
        view, at = view[written:], at + written
