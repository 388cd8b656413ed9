"""An SMTP server on loopback for the email alert tests: aiosmtpd with STARTTLS on a self-signed certificate
made here (with `cryptography`), a login it checks, and every message it accepted, as parsed emails."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = "patina-alerts"
PASSWORD = "smtp-s3cr3t-password-5b1e"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key: ``(cert.pem, key.pem)`` in ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """``with SmtpServer(tmp_path) as smtp:`` -- ``smtp.port``, ``smtp.ca_file``, ``smtp.messages`` (accepted
    emails), ``smtp.logins`` (user names that tried to log in), ``smtp.tls`` (whether each message came over
    TLS). ``starttls=False`` offers no STARTTLS at all."""

    def __init__(self, directory: Path, *, starttls: bool = True, port: int | None = None):
        self.ca_file, key_file = self_signed_certificate(directory)
        self.messages: list[EmailMessage] = []
        self.tls: list[bool] = []
        self.logins: list[str] = []
        context = None
        if starttls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_file, key_file)
        self.port = port or free_port()
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=starttls,
            auth_required=True,
            authenticator=self._check_login,
        )

    def _check_login(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd answers a refusal itself (535), as a real server does
        return AuthResult(
            success=auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD, handled=False
        )

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        self.tls.append(session.ssl is not None)
        return "250 OK"

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()
