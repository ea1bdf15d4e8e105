"""The checkpoint signing key: create it (0600, never replaced), load it, sign with it."""

from __future__ import annotations

import base64
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from retention.audit.signatures import fingerprint
from retention.errors import AuditError, UsageError
from retention.files import SecretFileError, read_secret_file


@dataclass(frozen=True)
class Signer:
    """A private key able to sign checkpoints."""

    key: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.key.public_key()

    @property
    def fingerprint(self) -> str:
        """The public key's fingerprint."""
        return fingerprint(self.public)

    def sign(self, message: bytes) -> str:
        """A base64 Ed25519 signature of `message`."""
        return base64.b64encode(self.key.sign(message)).decode()

    @classmethod
    def from_file(cls, path: Path, *, create: bool) -> Signer:
        """Load the key at `path`; when missing and `create`, make one (0600, never replaced)."""
        if not path.exists():
            if not create:
                raise AuditError(f"no signing key at {path}; `retention run` creates it")
            _create(path)
        try:
            pem = read_secret_file(path)
        except SecretFileError as exc:
            if exc.misplaced:  # a folder, a pipe, a device: the configuration names it
                raise UsageError(f"the signing key {path} {exc}") from None
            if not exc.exposed:
                raise AuditError(f"the signing key {path} {exc}") from None
            raise UsageError(
                f"the signing key {path} {exc}, and check who could have read it"
            ) from None
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError as exc:
            raise AuditError(f"cannot read the signing key {path}: {type(exc).__name__}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditError(f"the signing key {path} is not an Ed25519 key")
        return cls(key)


def generate(path: Path) -> Signer:
    """A new key written to `path` (0600, failing if the file exists)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return Signer.from_file(path, create=False)


def _create(path: Path) -> None:
    """Write a new private key with mode 0600, unless another process made one first."""
    with contextlib.suppress(FileExistsError):
        generate(path)
