"""TLS credentials and the loopback rule, shared by the server and the client boundary.

Plaintext is allowed only on loopback (unless ``services.allow_insecure``, inside a NetworkPolicy):
:func:`is_loopback` is the one test of "loopback", and the PEM files named by
:class:`~spiral.config.TLSConfig` are read here, for server and client credentials alike.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import grpc

from spiral.config import ConfigError, TLSConfig


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs; other host names count as non-loopback."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def read_pem(path: Path | None, field: str) -> bytes | None:
    """Read a PEM file named by ``services.tls.<field>``.

    Raises:
        ConfigError: unreadable (names the field and the path).
    """
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"services.tls.{field}: cannot read {path}: {err.strerror}") from None


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """TLS credentials; with ``ca_file`` set, clients must present a certificate signed by it (mTLS).

    Raises:
        ConfigError: a PEM file cannot be read (names the field and the path), or
            ``cert_file``/``key_file`` is unset.
    """
    key = read_pem(tls.key_file, "key_file")
    cert = read_pem(tls.cert_file, "cert_file")
    if key is None or cert is None:  # TLSConfig refuses enabled TLS without both; a server needs them
        raise ConfigError("services.tls: a TLS server needs tls.cert_file and tls.key_file")
    ca = read_pem(tls.ca_file, "ca_file")
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def channel_credentials(tls: TLSConfig) -> grpc.ChannelCredentials:
    """TLS credentials: ``ca_file`` verifies the server; ``cert_file``/``key_file`` are presented
    as the client certificate (needed when the server requires mTLS).

    Raises:
        ConfigError: a PEM file cannot be read.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(tls.ca_file, "ca_file"),
        private_key=read_pem(tls.key_file, "key_file"),
        certificate_chain=read_pem(tls.cert_file, "cert_file"),
    )
