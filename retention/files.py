"""Files on disk: durable folder entries, private modes for the files we own, and the rules a
key or token file must meet before it is read.

Files the product owns (the SQLite ledger and its -wal/-shm, the audit file, spools, locks) are
made 0600 when found open to group or others, with one warning naming the file and its old mode.
Key and token files are never changed: one open to group or others (by its mode or a POSIX ACL),
or owned by another user than this one or root, is refused, as ssh refuses a private key.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from stat import S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK

from retention.logs import get_logger

MAX_SECRET_BYTES = 65536  # a key or token file larger than this is not one

# POSIX ACL entry tags, as Linux stores them in the `system.posix_acl_access` attribute
_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x02, 0x04, 0x08, 0x10, 0x20

log = get_logger("retention.files")


def fsync_folder(folder: Path) -> None:
    """Make a new or renamed entry in `folder` durable (fsync of the folder itself)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private(fd: int, path: Path | str) -> None:
    """Take every bit of group and others from a file we own, open as `fd`, with one warning
    naming it and its old mode; a file we cannot change (another user's) is named too. Only a
    regular file: a device such as `/dev/full` or a pipe is the system's, never changed."""
    stat = os.fstat(fd)
    mode = stat.st_mode & 0o7777
    if not mode & 0o077 or not S_ISREG(stat.st_mode):
        return
    private = mode & 0o700
    try:
        os.fchmod(fd, private)
    except OSError as exc:
        log.warning(
            "file.not_private",
            path=str(path),
            mode=f"{mode:04o}",
            error=exc.strerror,
            hint=f"its owner should run `chmod 600 {path}`",
        )
        return
    log.warning("file.made_private", path=str(path), old_mode=f"{mode:04o}", mode=f"{private:04o}")


def make_private_if_present(path: Path | str) -> None:
    """`make_private` for a file not open here (SQLite's -wal and -shm); nothing when missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # missing, a symlink, or not ours to open: SQLite reports what matters
        return
    try:
        make_private(fd, path)
    finally:
        os.close(fd)


def read_secret_file(path: Path) -> bytes:
    """The bytes of a key or token file; `SecretFileError` when it cannot be read, is not a
    regular file (a pipe, a device, a folder) or is not private (see `secret_problem`)."""
    try:  # O_NONBLOCK: opening a FIFO would otherwise wait for a writer, forever
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretFileError(f"cannot be read: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not S_ISREG(mode):
            raise SecretFileError(f"is not a regular file but {_kind(mode)}", misplaced=True)
        problem = secret_problem(fd, path)
        if problem:
            raise SecretFileError(problem, exposed=True)
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretFileError(f"is larger than {MAX_SECRET_BYTES} bytes: not a key or token")
    return data


def _kind(mode: int) -> str:
    """What a file that is not a regular one is, in a word or two."""
    kinds = ((S_ISDIR, "a folder"), (S_ISFIFO, "a named pipe"), (S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a device")


class SecretFileError(Exception):
    """A key or token file that cannot be read, is `exposed` to others, or is `misplaced` (not
    a regular file: the path names the wrong thing); the message (to follow the file's name)
    says why and the fix, never what the file holds."""

    def __init__(self, message: str, *, exposed: bool = False, misplaced: bool = False) -> None:
        super().__init__(message)
        self.exposed, self.misplaced = exposed, misplaced


def secret_problem(fd: int, path: Path | str) -> str | None:
    """Why the key or token file open as `fd` may be someone else's (a phrase to follow its
    name), or None when it is private: owned by this user or root, and neither its mode nor an
    ACL lets group or others in."""
    stat = os.fstat(fd)
    mode = stat.st_mode & 0o777
    if stat.st_uid not in (0, os.geteuid()):
        return (
            f"belongs to uid {stat.st_uid}, who could replace it (mode {mode:04o}); make it "
            f"this user's or root's (chown), then run `chmod 600 {path}`"
        )
    if not mode & 0o077:
        return None
    acl = _access_acl(fd)
    if acl is not None and acl_private(acl, os.geteuid()):
        return None  # systemd's credentials on tmpfs: 0400 and `user:UID:r`, shown as 0440
    fix = f"`chmod 600 {path}`" + (f" and `setfacl -b {path}`" if acl is not None else "")
    shown = f"mode {mode:04o}" + (" with an ACL" if acl is not None else "")
    return f"is open to group or others ({shown}); run {fix}"


def _access_acl(fd: int) -> bytes | None:
    """The file's POSIX access ACL, as stored; None when it has none beyond its mode."""
    try:
        return os.getxattr(fd, "system.posix_acl_access")
    except OSError:  # no ACL, or a file system without them
        return None


def acl_private(acl: bytes, uid: int) -> bool:
    """Whether a POSIX access ACL (Linux's xattr layout) lets in only the owner and `uid`: no
    owning group, named group or other entry with a bit, no named user but `uid`."""
    count, rest = divmod(len(acl) - 4, 8)
    if len(acl) < 4 or rest or struct.unpack_from("<I", acl)[0] != 2:
        return False
    entries = [struct.unpack_from("<HHI", acl, 4 + 8 * i) for i in range(count)]
    mask = next((perm for tag, perm, _ in entries if tag == _ACL_MASK), 0o7)
    for tag, perm, qualifier in entries:
        if tag in (_ACL_GROUP_OBJ, _ACL_GROUP) and perm & mask:
            return False
        if tag == _ACL_USER and perm & mask and qualifier != uid:
            return False
        if tag == _ACL_OTHER and perm:
            return False
    return True
