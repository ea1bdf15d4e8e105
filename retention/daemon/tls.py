"""TLS for the HTTP surface: `server.tls_cert_file` and `server.tls_key_file` into a server
context (TLS 1.2 or later), or a ConfigError (exit 2) naming the key that is wrong."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from retention.config.settings import Settings
from retention.errors import ConfigError
from retention.files import SecretFileError, read_secret_file


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context the daemon serves with; None when no certificate is configured."""
    server = settings.server
    cert, key = server.tls_cert_file, server.tls_key_file
    if cert is None or key is None:
        return None

    def error(name: str, message: str) -> ConfigError:
        return ConfigError(
            message,
            file=str(settings.path),
            line=server.key_lines.get(name),
            key=f"server.{name}",
        )

    _check_cert(cert, error)
    _check_key(key, error)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        why = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise error("tls_key_file", f"{key} does not go with {cert} ({why})") from None
    return context


def _check_cert(path: Path, error: Callable[[str, str], ConfigError]) -> None:
    """The certificate file holds a PEM certificate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error("tls_cert_file", f"cannot read {path}: {exc.strerror}") from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise error("tls_cert_file", f"{path} holds no PEM certificate") from None


def _check_key(path: Path, error: Callable[[str, str], ConfigError]) -> None:
    """The key file is private (as ssh wants a private key) and holds an unencrypted PEM key."""
    try:
        data = read_secret_file(path)
    except SecretFileError as exc:
        raise error("tls_key_file", f"{path} {exc}") from None
    try:
        load_pem_private_key(data, password=None)
    except TypeError:
        raise error("tls_key_file", f"{path} is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise error("tls_key_file", f"{path} holds no PEM private key") from None
