"""File modes: files we own made 0600 with a warning; key files judged by mode, ACL and owner."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from retention.files import acl_private, make_private, make_private_if_present, secret_problem

USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
NOBODY = 0xFFFFFFFF  # the qualifier of entries that name no one


def _acl(
    owner: int,
    group: int,
    other: int,
    *,
    mask: int | None = None,
    users: Sequence[tuple[int, int]] = (),
    groups: Sequence[tuple[int, int]] = (),
) -> bytes:
    """A POSIX access ACL as Linux stores it: version 2, then (tag, perm, id) entries sorted by
    tag; `users` and `groups` are (id, perm) pairs of named entries."""
    entries = [(USER_OBJ, owner, NOBODY), *((USER, p, i) for i, p in users)]
    entries += [(GROUP_OBJ, group, NOBODY), *((GROUP, p, i) for i, p in groups)]
    entries += [(MASK, mask, NOBODY)] if mask is not None else []
    entries += [(OTHER, other, NOBODY)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


# systemd's credential files on tmpfs: 0400 root, plus read for the service's user
SYSTEMD = _acl(4, 0, 0, mask=4, users=[(1234, 4)])


def test_systemd_credential_acl_is_private_for_its_user() -> None:
    """0400 plus `user:UID:r` lets in the owner and UID only: private for UID, not for others."""
    assert acl_private(SYSTEMD, 1234)
    assert not acl_private(SYSTEMD, 999)


@pytest.mark.parametrize(
    "acl",
    [
        _acl(6, 4, 0, mask=4),  # the owning group
        _acl(6, 0, 0, mask=4, groups=[(50, 4)]),  # a named group
        _acl(6, 0, 0, mask=4, users=[(999, 4)]),  # a named user who is not us
        _acl(6, 0, 4, mask=0),  # others
        b"\x02\x00\x00\x00\x01",  # torn
        b"\x03\x00\x00\x00",  # another version
    ],
)
def test_acls_that_let_others_in_are_not_private(acl: bytes) -> None:
    """The owning group, a named group, others: each one's bit makes the file shared."""
    assert not acl_private(acl, 1234)


def test_a_masked_out_group_entry_does_not_count() -> None:
    """A named group whose bits the mask removes gets nothing: still private."""
    assert acl_private(_acl(6, 4, 0, mask=0, groups=[(50, 4)]), 1234)


def test_a_real_acl_on_disk_is_read(tmp_path: Path) -> None:
    """On a file system with ACLs: `user:EUID:r` on a 0400 file is accepted, `group::r` not."""
    path = tmp_path / "credential"
    path.write_text("sk-acl-0001")
    path.chmod(0o400)
    me = os.geteuid()
    try:
        os.setxattr(path, "system.posix_acl_access", _acl(4, 0, 0, mask=4, users=[(me, 4)]))
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs here: {exc.strerror}")
    assert path.stat().st_mode & 0o777 == 0o440, "the mask shows as the group's bits"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert secret_problem(fd, path) is None
        os.setxattr(path, "system.posix_acl_access", _acl(4, 4, 0, mask=4))
        problem = secret_problem(fd, path)
    finally:
        os.close(fd)
    assert problem is not None and "with an ACL" in problem and "setfacl -b" in problem


def test_make_private_fixes_the_mode_once_with_one_warning(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """0644 becomes 0600 (0755 becomes 0700) with one warning naming file and old mode; a
    private file is left alone, silently."""
    data, tool = tmp_path / "ledger.db", tmp_path / "tool"
    data.write_text("x")
    data.chmod(0o644)
    tool.write_text("x")
    tool.chmod(0o755)
    for _ in range(2):
        fd = os.open(data, os.O_RDWR)
        try:
            make_private(fd, data)
        finally:
            os.close(fd)
    make_private_if_present(tool)
    make_private_if_present(tmp_path / "missing-wal")
    assert data.stat().st_mode & 0o777 == 0o600 and tool.stat().st_mode & 0o777 == 0o700
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert f'"path": "{data}"' in lines[0] and '"old_mode": "0644"' in lines[0]
    assert '"level": "warning"' in lines[0] and "file.made_private" in lines[0]


def test_only_regular_files_are_changed(tmp_path: Path, log_stream: io.StringIO) -> None:
    """A pipe (or a device such as /dev/full given as the audit file) is the system's: its mode
    is left alone, silently."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe, 0o644)
    pipe.chmod(0o644)
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        make_private(fd, pipe)
    finally:
        os.close(fd)
    make_private_if_present(pipe)
    assert pipe.stat().st_mode & 0o777 == 0o644 and log_stream.getvalue() == ""
