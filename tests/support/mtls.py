"""Certificates made in the test and a TLS Echo server that switches them: for rotation tests.

Each generation has its own CA, a server certificate (``localhost``, 127.0.0.1) and a client
certificate, both signed by that CA. The server requires client certificates and, once switched
to generation N, presents generation N's certificate and trusts only generation N's CA on every
new connection (``grpc.dynamic_ssl_server_credentials``); connections already open keep working.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from graceful_grpc.testing import EchoServer

# grpc's TLS helpers are untyped; these are their types as used here.
_channel_credentials: Callable[..., grpc.ChannelCredentials] = grpc.ssl_channel_credentials
_server_certificates: Callable[..., grpc.ServerCertificateConfiguration] = (
    grpc.ssl_server_certificate_configuration
)
_dynamic_server_credentials: Callable[..., grpc.ServerCredentials] = (
    grpc.dynamic_ssl_server_credentials
)


@dataclass(frozen=True)
class Generation:
    ca: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def make_generation(number: int) -> Generation:
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = f"graceful_grpc test CA {number}"
    return Generation(
        ca=_issue(ca_name, ca_key, ca_name, ca_key, ca=True),
        server_cert=_issue("localhost", server_key, ca_name, ca_key, server=True),
        server_key=_pem_key(server_key),
        client_cert=_issue(f"client {number}", client_key, ca_name, ca_key),
        client_key=_pem_key(client_key),
    )


class Pki:
    """Generations of certificates, made on first use."""

    def __init__(self) -> None:
        self._generations: dict[int, Generation] = {}

    def __getitem__(self, number: int) -> Generation:
        if number not in self._generations:
            self._generations[number] = make_generation(number)
        return self._generations[number]


def client_credentials(pki: Pki, number: int) -> grpc.ChannelCredentials:
    generation = pki[number]
    return _channel_credentials(
        root_certificates=generation.ca,
        private_key=generation.client_key,
        certificate_chain=generation.client_cert,
    )


def _server_configuration(generation: Generation) -> grpc.ServerCertificateConfiguration:
    return _server_certificates(
        [(generation.server_key, generation.server_cert)], root_certificates=generation.ca
    )


@contextlib.asynccontextmanager
async def serve_switchable(pki: Pki) -> AsyncIterator[tuple[EchoServer, Callable[[int], None]]]:
    """A TLS Echo server on generation 1, and ``switch(n)`` to move it to generation ``n``."""
    current = {"number": 1}

    def fetch() -> grpc.ServerCertificateConfiguration:
        return _server_configuration(pki[current["number"]])

    credentials = _dynamic_server_credentials(
        _server_configuration(pki[1]), fetch, require_client_authentication=True
    )

    def switch(number: int) -> None:
        pki[number]  # made before the server asks for it
        current["number"] = number

    async with EchoServer(credentials=credentials) as server:
        yield server, switch
