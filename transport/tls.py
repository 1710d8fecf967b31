"""A local certificate authority for development and tests (``partita dev --tls``).

It writes a CA, a server certificate for ``127.0.0.1``/``localhost`` and a client certificate, all signed by
the CA, into one directory (keys readable by the owner only). Files already there and still valid for a day
are reused, so clients configured once keep working across restarts. Production deployments bring their own
PKI; the server block this module renders is the same shape either way.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS: Final = 365
_REUSE_MARGIN: Final = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_block(self, *, verify_clients: bool = True) -> str:
        """The ``tls {}`` block of a nats-server configuration; ``verify_clients`` demands client certificates."""
        return (
            "tls {\n"
            f"  cert_file: {json.dumps(str(self.server_cert))}\n"
            f"  key_file: {json.dumps(str(self.server_key))}\n"
            f"  ca_file: {json.dumps(str(self.ca))}\n"
            f"  verify: {'true' if verify_clients else 'false'}\n"
            "  timeout: 5\n"
            "}\n"
        )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _reusable(files: TlsFiles) -> bool:
    """Every file there, every certificate valid for another day, and both leaves signed by this CA (a renewal
    cut short could leave a new leaf next to the old CA)."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        leaves = [x509.load_pem_x509_certificate(p.read_bytes()) for p in (files.server_cert, files.client_cert)]
        if not (files.server_key.exists() and files.client_key.exists()):
            return False
        ca_key = ca.public_key()
        assert isinstance(ca_key, ec.EllipticCurvePublicKey)
        for leaf in leaves:
            assert leaf.signature_hash_algorithm is not None
            ca_key.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    except (OSError, ValueError, AssertionError, InvalidSignature):
        return False
    deadline = dt.datetime.now(dt.UTC) + _REUSE_MARGIN
    return all(cert.not_valid_after_utc > deadline for cert in (ca, *leaves))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partita dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def local_ca(directory: str | os.PathLike[str]) -> TlsFiles:
    """The CA and certificates in ``directory``, created (or renewed) when missing or about to expire."""
    root = Path(directory)
    files = TlsFiles(
        ca=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server-key.pem",
        client_cert=root / "client.pem",
        client_key=root / "client-key.pem",
    )
    if _reusable(files):
        return files
    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate a little clock skew
    until = now + dt.timedelta(days=VALID_DAYS)

    ca_key = _key()
    ca_name = _name("Partita local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    def leaf(common_name: str, usage: x509.ObjectIdentifier, cert_path: Path, key_path: Path) -> None:
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert_path.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)

    leaf("nats-server", ExtendedKeyUsageOID.SERVER_AUTH, files.server_cert, files.server_key)
    leaf("partita-client", ExtendedKeyUsageOID.CLIENT_AUTH, files.client_cert, files.client_key)
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))  # last: its presence means "complete"
    return files


__all__ = ["TlsFiles", "local_ca"]
