"""Fixtures for the transport tests: configs on free loopback ports, and a throw-away PKI."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import NamedTuple

import pytest



class Pki(NamedTuple):
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # an unrelated CA, to check that its clients are refused
    other_client_cert: Path
    other_client_key: Path


def _write_key(key, path: Path) -> Path:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def _make_ca(name: str):  # noqa: ANN202
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(ca_key, ca_cert, common_name: str, *, server: bool):  # noqa: ANN001, ANN202
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A self-signed CA with a server certificate (localhost, 127.0.0.1) and a client certificate,
    plus a second, unrelated CA with its own client certificate."""
    from cryptography.hazmat.primitives import serialization

    folder = tmp_path_factory.mktemp("pki")
    pem = serialization.Encoding.PEM

    def write_cert(cert, name: str) -> Path:  # noqa: ANN001
        path = folder / name
        path.write_bytes(cert.public_bytes(pem))
        return path

    ca_key, ca_cert = _make_ca("spiral-test-ca")
    server_key, server_cert = _issue(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _issue(ca_key, ca_cert, "spiral-actor", server=False)
    other_key, other_cert = _make_ca("intruder-ca")
    intruder_key, intruder_cert = _issue(other_key, other_cert, "intruder", server=False)
    return Pki(
        ca=write_cert(ca_cert, "ca.pem"),
        server_cert=write_cert(server_cert, "server.pem"),
        server_key=_write_key(server_key, folder / "server.key"),
        client_cert=write_cert(client_cert, "client.pem"),
        client_key=_write_key(client_key, folder / "client.key"),
        other_ca=write_cert(other_cert, "other-ca.pem"),
        other_client_cert=write_cert(intruder_cert, "intruder.pem"),
        other_client_key=_write_key(intruder_key, folder / "intruder.key"),
    )
