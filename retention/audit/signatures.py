"""Ed25519 public keys: load from PEM, fingerprint, verify a signature (`cryptography` only)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)

from retention.errors import UsageError


def fingerprint(public: Ed25519PublicKey) -> str:
    """`sha256:` and the hex SHA-256 of the raw 32-byte public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo), for auditors."""
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public(pem: str | bytes) -> Ed25519PublicKey:
    """A public key from PEM text."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError("the public key is not an Ed25519 key")
    return key


def load_public_or_none(pem: object) -> Ed25519PublicKey | None:
    """A public key from PEM text found in a trail or receipt; None when it is not one."""
    if not isinstance(pem, str):
        return None
    try:
        return load_public(pem)
    except UsageError:
        return None


def verify_signature(public: Ed25519PublicKey, signature_b64: str, message: bytes) -> bool:
    """Whether `signature_b64` signs `message` under `public`."""
    try:
        public.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError):
        return False
    return True
