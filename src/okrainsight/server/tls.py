"""A self-signed TLS certificate for ``okra serve --https``.

Phone browsers open the camera only in a secure context (HTTPS or localhost), so serving a
phone on the local network needs HTTPS. The certificate is made once with the
``cryptography`` package and kept in the cache folder (``$XDG_CACHE_HOME/okrainsight/tls``,
default ``~/.cache/okrainsight/tls``); the phone shows a warning once, which the user accepts.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import socket
from pathlib import Path

from okrainsight.errors import MissingDependencyError
from okrainsight.imageio import atomic_write_bytes

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """The folder holding ``cert.pem`` and ``key.pem``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "okrainsight" / "tls"


def _local_addresses() -> set[str]:
    addrs = {"127.0.0.1"}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the LAN interface
            addrs.add(s.getsockname()[0])
    except OSError:
        pass
    return addrs


def ensure_self_signed(directory: Path | None = None, *, days: int = 825) -> tuple[Path, Path]:
    """Return ``(cert.pem, key.pem)``, creating a self-signed pair when missing or expiring.

    The certificate names ``localhost``, the host name, 127.0.0.1 and this machine's LAN address.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "serve") from exc

    folder = directory or cache_dir()
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    now = _dt.datetime.now(_dt.UTC)
    if cert_path.is_file() and key_path.is_file():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc > now + _dt.timedelta(days=7):
                return cert_path, key_path
        except ValueError:
            log.warning("%s: unreadable certificate; making a new one", cert_path)
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "okra serve (self-signed)")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(_local_addresses())]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write_bytes(key_path, key_bytes)
    key_path.chmod(0o600)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
