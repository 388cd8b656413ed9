"""Backups encrypted at rest with age (https://age-encryption.org), through pyrage (bindings of the age
reference library in Rust). Plain Python: no Dagster, no bucket.

The stored object of an encrypted backup is an age file (binary, not armored) of exactly the bytes an
unencrypted backup would have stored (the compressed dump, or the weekly archive), so anyone holding an
identity opens it with the age CLI alone: ``age -d -i key.txt daily/...sql.zst.age > dump.sql.zst``.

* Recipients are public keys: X25519 (``age1...``) and SSH (``ssh-ed25519 ...``, ``ssh-rsa ...``).  They
  live in patina.yaml (``encryption.recipients``); manifests record their fingerprints, never a secret.
* The identity (the private key) is read from the environment variable the config names
  (``encryption.identity_file_env``, default ``PATINA_AGE_IDENTITY``): the path of an identity file
  (``patina keygen``'s or age-keygen's output, or an unencrypted OpenSSH private key), or that file's text.
  Only the commands that read plaintext need it (restore verification, download, restore, the weekly
  archive, reencrypt); listing, retention and reconciliation check stored bytes and never do.
* Encryption and decryption stream (age's STREAM format, 64 KiB chunks): memory stays flat whatever the
  size.  Decryption writes to a file that is only kept when the whole object authenticated: age checks
  each chunk as it goes, so a damaged byte near the end is found after earlier plaintext came out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import pyrage
from pyrage import ssh, x25519

from .engine.errors import PatinaError
from .engine.formats import HashingReader, HashingWriter
from .storage.buckets import StorageIntegrityError

if TYPE_CHECKING:
    from .config import EncryptionConfig

logger = logging.getLogger(__name__)

#: Every age file starts with this line (binary format; the armored one starts with -----BEGIN AGE...).
AGE_MAGIC = b"age-encryption.org/v1\n"
SSH_RECIPIENT_TYPES = ("ssh-ed25519", "ssh-rsa")
#: ``encryption.identity_file_env``'s default: the variable that holds the identity.
DEFAULT_IDENTITY_ENV = "PATINA_AGE_IDENTITY"

Recipient = x25519.Recipient | ssh.Recipient
Identity = x25519.Identity | ssh.Identity


class EncryptionError(PatinaError):
    """Something about keys or encrypted objects; each message names the problem and the fix."""


class InvalidRecipient(EncryptionError, ValueError):
    """A recipient that is not an age X25519 or SSH public key."""


class IdentityMissing(EncryptionError):
    """The environment variable that should hold the identity is not set."""


class InvalidIdentity(EncryptionError):
    """The identity could not be read or parsed."""


class WrongIdentity(EncryptionError):
    """The stored object is whole but none of the identities opens it."""


class CiphertextDamaged(StorageIntegrityError):
    """The stored bytes are not what was written: age refuses them (a damaged or tampered object)."""


# --------------------------------------------------------------------------------------------------
# Recipients
# --------------------------------------------------------------------------------------------------


def parse_recipient(text: str) -> Recipient:
    """An age recipient from its public-key text; ``InvalidRecipient`` says what is wrong and the fix."""
    if not isinstance(text, str):
        raise InvalidRecipient(f"a recipient must be text, not {type(text).__name__}")
    text = text.strip()
    if text.upper().startswith("AGE-SECRET-KEY-") or "PRIVATE KEY" in text:
        raise InvalidRecipient(
            "this is a private key (an identity), not a recipient: never put it in patina.yaml; list its public key "
            "(`age-keygen -y key.txt`, or the `# public key:` line of `patina keygen`'s output) and keep the private "
            "key where the identity environment variable points"
        )
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        if text.split(" ", 1)[0] in SSH_RECIPIENT_TYPES:
            return ssh.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise InvalidRecipient(f"{_short(text)} is not a valid public key ({exc}): copy it again whole") from exc
    raise InvalidRecipient(
        f"{_short(text)} is not an age recipient: expected an X25519 key (age1..., from `patina keygen` or "
        "age-keygen) or an SSH public key (ssh-ed25519 ... or ssh-rsa ..., a line of ~/.ssh/id_ed25519.pub)"
    )


def recipient_fingerprint(text: str) -> str:
    """A short public name for a recipient, recorded in manifests: ``ssh-ed25519 SHA256:...`` as
    ``ssh-keygen -l`` prints it for SSH keys, ``age SHA256:...`` (of the ``age1...`` text) for X25519."""
    parse_recipient(text)
    text = text.strip()
    if text.startswith("age1"):
        return f"age SHA256:{_b64sha256(text.encode('ascii'))}"
    kind, blob = text.split()[:2]
    return f"{kind} SHA256:{_b64sha256(base64.b64decode(blob))}"


def _b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii").rstrip("=")


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def fingerprints(recipients: Iterable[str]) -> list[str]:
    """The recipients' fingerprints, sorted: what a manifest records and what ``reencrypt`` compares."""
    return sorted(recipient_fingerprint(text) for text in recipients)


# --------------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyring:
    """The identities one environment variable provided, with the fingerprints of their public keys
    (known for X25519 and OpenSSH-format keys) to say which recipient a backup needs."""

    identities: tuple[Identity, ...]
    fingerprints: tuple[str, ...]
    variable: str

    def describe(self) -> str:
        names = ", ".join(self.fingerprints) or "fingerprint unknown"
        return f"{len(self.identities)} identit{'y' if len(self.identities) == 1 else 'ies'} from ${self.variable} ({names})"


def load_identities(variable: str, env: Mapping[str, str]) -> Keyring:
    """Read the identities ``$variable`` holds: the path of an identity file, or the file's text itself."""
    value = env.get(variable)
    if not value or not value.strip():
        raise IdentityMissing(
            f"this needs the age identity that opens the backups, but ${variable} is not set: export {variable}=<path "
            f"of the identity file> (the private key `patina keygen` printed, or an OpenSSH private key of a listed "
            "recipient); it is read from the environment only, never from patina.yaml"
        )
    stripped = value.strip()
    if stripped.startswith(("AGE-SECRET-KEY-", "#", "-----BEGIN")):
        text, where = stripped, f"${variable}"
    else:
        path = Path(stripped).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InvalidIdentity(
                f"${variable} names {path}, which does not exist: point it at the identity file"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidIdentity(f"cannot read the identity file {path} named by ${variable}: {exc}") from exc
        where = f"{path} (${variable})"
    identities, fingerprints = parse_identities(text, where)
    return Keyring(tuple(identities), tuple(fingerprints), variable)


def parse_identities(text: str, where: str = "the identity") -> tuple[list[Identity], list[str]]:
    """Identities from an age identity file (``AGE-SECRET-KEY-1...`` lines, ``#`` comments) or an OpenSSH
    private key; with the fingerprints of the public keys that could be derived."""
    if "-----BEGIN" in text:
        try:
            identity = ssh.Identity.from_buffer(text.encode("utf-8"))
        except pyrage.IdentityError as exc:
            raise InvalidIdentity(
                f"{where} is not an SSH private key age can use ({exc}); an SSH identity must be an unencrypted "
                "ed25519 or RSA key (age cannot prompt for a passphrase here), or use an age identity "
                "(`patina keygen`)"
            ) from exc
        fingerprint = _openssh_fingerprint(text)
        return [identity], [fingerprint] if fingerprint else []
    identities, fingerprints = [], []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identity = x25519.Identity.from_str(line)
        except pyrage.IdentityError as exc:
            raise InvalidIdentity(
                f"line {number} of {where} is not an age identity ({exc}): expected AGE-SECRET-KEY-1... lines, "
                "as `patina keygen` writes them"
            ) from exc
        identities.append(identity)
        fingerprints.append(recipient_fingerprint(str(identity.to_public())))
    if not identities:
        raise InvalidIdentity(f"{where} holds no identity: expected an AGE-SECRET-KEY-1... line")
    return identities, fingerprints


def _openssh_fingerprint(text: str) -> str | None:
    """The public key's fingerprint from an unencrypted ``openssh-key-v1`` private key (None if not one)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if not lines or lines[0] != "-----BEGIN OPENSSH PRIVATE KEY-----":
        return None
    try:
        blob = base64.b64decode("".join(line for line in lines[1:] if not line.startswith("-----")))
        magic = b"openssh-key-v1\0"
        if not blob.startswith(magic):
            return None
        offset = len(magic)
        for _ in range(3):  # cipher name, kdf name, kdf options
            (length,) = struct.unpack_from(">I", blob, offset)
            offset += 4 + length
        offset += 4  # number of keys
        (length,) = struct.unpack_from(">I", blob, offset)
        public = blob[offset + 4 : offset + 4 + length]
        (kind_length,) = struct.unpack_from(">I", public, 0)
        kind = public[4 : 4 + kind_length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return None
    return f"{kind} SHA256:{_b64sha256(public)}"


@dataclass(frozen=True)
class NewIdentity:
    """What ``patina keygen`` makes: the identity file's text and the recipient to list in patina.yaml."""

    file_text: str
    recipient: str


def generate_identity(now: datetime | None = None) -> NewIdentity:
    """A new X25519 identity, in age-keygen's file format (so the age CLI reads it as it is)."""
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return NewIdentity(f"# created: {created}\n# public key: {recipient}\n{identity}\n", recipient)


# --------------------------------------------------------------------------------------------------
# Streaming encryption and decryption
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sealed:
    """What one encryption or decryption saw: the plaintext (inside) and the age file (stored)."""

    plain_bytes: int
    plain_sha256: str
    stored_bytes: int
    stored_sha256: str


class _WatchedReader(HashingReader):
    """A HashingReader that remembers the error its source raised: pyrage turns it into a DecryptError
    ("OSError: ..."), and a network or disk failure must not be reported as a damaged backup."""

    error: BaseException | None = None

    def readinto(self, buffer) -> int:
        try:
            return super().readinto(buffer)
        except BaseException as exc:
            self.error = exc
            raise


class _WatchedWriter(HashingWriter):
    """The same for the side written to (a full disk)."""

    error: BaseException | None = None

    def write(self, data) -> int:
        try:
            return super().write(data)
        except BaseException as exc:
            self.error = exc
            raise


def encrypt_file(source: Path | str, target: Path | str, recipients: Sequence[Recipient]) -> Sealed:
    """Encrypt ``source`` into a new file ``target`` for ``recipients``, streaming; both sides hashed.
    On failure ``target`` is removed."""
    target = Path(target)
    try:
        with open(source, "rb") as plain_file, open(target, "xb") as stored_file:
            return encrypt_stream(plain_file, stored_file, recipients)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def encrypt_stream(source: BinaryIO, target: BinaryIO, recipients: Sequence[Recipient]) -> Sealed:
    """Encrypt the binary stream ``source`` into ``target`` (neither is closed), streaming."""
    if not recipients:
        raise EncryptionError("no recipients to encrypt to: list at least one under encryption.recipients")
    plain, stored = _WatchedReader(source), _WatchedWriter(target)
    try:
        pyrage.encrypt_io(plain, stored, list(recipients))
    except (pyrage.EncryptError, OSError) as exc:
        _raise_stream_error(plain, stored)
        raise EncryptionError(f"could not encrypt: {exc}") from exc
    return Sealed(plain.bytes, plain.sha256.hexdigest(), stored.bytes, stored.sha256.hexdigest())


def _raise_stream_error(*streams: _WatchedReader | _WatchedWriter) -> None:
    for stream in streams:
        if stream.error is not None:
            raise stream.error


def decrypt_to_file(
    source: BinaryIO,
    target: Path | str,
    keyring: Keyring,
    *,
    what: str,
    stored_sha256: str | None = None,
    recipients: Iterable[str] = (),
) -> Sealed:
    """Decrypt the age stream ``source`` into the new file ``target``; it exists only when all of it
    authenticated (the partial plaintext of a refused object is removed).  See ``decrypt_stream``."""
    target = Path(target)
    try:
        with open(target, "xb") as plain_file:
            return decrypt_stream(
                source, plain_file, keyring, what=what, stored_sha256=stored_sha256, recipients=recipients
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def decrypt_to_temporary(
    source: BinaryIO,
    keyring: Keyring,
    *,
    what: str,
    stored_sha256: str | None = None,
    recipients: Iterable[str] = (),
) -> tuple[BinaryIO, Sealed]:
    """Decrypt into an anonymous temporary file (it has no name, so nothing is left behind whatever
    happens) and return it open at its start, once all of it authenticated.  ``source`` is closed."""
    plain_file = tempfile.TemporaryFile()
    try:
        with source:
            sealed = decrypt_stream(
                source, plain_file, keyring, what=what, stored_sha256=stored_sha256, recipients=recipients
            )
        plain_file.seek(0)
    except BaseException:
        plain_file.close()
        raise
    return plain_file, sealed  # type: ignore[return-value]


def decrypt_stream(
    source: BinaryIO,
    target: BinaryIO,
    keyring: Keyring,
    *,
    what: str,
    stored_sha256: str | None = None,
    recipients: Iterable[str] = (),
) -> Sealed:
    """Decrypt the age stream ``source`` into ``target``.  Plaintext reaches ``target`` as each 64 KiB
    chunk authenticates, so a refusal can come after some was written: callers keep ``target`` only when
    this returns (``decrypt_to_file``, ``decrypt_to_temporary``).

    ``stored_sha256`` (the manifest's digest of the stored bytes) tells damage from a wrong key: when the
    stored bytes still hash to it, a refusal is the identity's fault (``WrongIdentity``, naming the
    ``recipients`` fingerprints the object was encrypted to); otherwise the object is damaged
    (``CiphertextDamaged``, a ``StorageIntegrityError``).  ``source`` is read to its end either way.  An
    error reading ``source`` or writing ``target`` (network, disk) is raised as it is.
    """
    stored, plain = _WatchedReader(source), _WatchedWriter(target)
    refused: str | None = None
    try:
        pyrage.decrypt_io(stored, plain, list(keyring.identities))
    except (pyrage.DecryptError, OSError) as exc:
        _raise_stream_error(stored, plain)
        refused = str(exc)
    stored.drain()
    digest = stored.sha256.hexdigest()
    if refused is None and (stored_sha256 is None or digest == stored_sha256):
        return Sealed(plain.bytes, plain.sha256.hexdigest(), stored.bytes, digest)
    if stored_sha256 is not None and digest != stored_sha256:
        raise CiphertextDamaged(
            f"{what} is damaged: its {stored.bytes} stored bytes have sha256 {digest[:12]}..., not the "
            f"{stored_sha256[:12]}... its manifest recorded"
            + (f", and age refuses it ({refused})" if refused else "")
            + "; restore another backup (`patina list`), and keep this object for investigation"
        )
    if "no matching keys" in (refused or "").lower():
        needed = ", ".join(recipients) or "(not recorded)"
        raise WrongIdentity(
            f"{what} cannot be opened with {keyring.describe()}: it was encrypted to {needed}. Point "
            f"${keyring.variable} at the identity of one of those recipients"
            + ("" if stored_sha256 is not None else " (or the object's header is damaged)")
        )
    raise CiphertextDamaged(
        f"{what} is damaged: age refuses it ({refused}); restore another backup (`patina list`), and keep this "
        "object for investigation"
    )


class AgeKeys:
    """One installation's keys: the recipients new objects are encrypted to (none: stored unencrypted) and
    the environment variable that holds the identity, read on first need (commands that only list never
    need it).  Built from patina.yaml's ``encryption`` section by ``from_config``."""

    def __init__(
        self,
        recipients: Sequence[str] = (),
        identity_env: str = DEFAULT_IDENTITY_ENV,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.recipient_texts = tuple(recipients)
        self.recipients = [parse_recipient(text) for text in self.recipient_texts]
        self.fingerprints = fingerprints(self.recipient_texts)
        self.identity_env = identity_env
        self._env = env
        self._keyring: Keyring | None = None

    @classmethod
    def from_config(cls, encryption: EncryptionConfig, env: Mapping[str, str] | None = None) -> AgeKeys:
        return cls(encryption.recipients, encryption.identity_file_env, env)

    @property
    def enabled(self) -> bool:
        return bool(self.recipients)

    def keyring(self) -> Keyring:
        """The identities (``IdentityMissing`` / ``InvalidIdentity`` when the environment has none usable)."""
        if self._keyring is None:
            self._keyring = load_identities(self.identity_env, os.environ if self._env is None else self._env)
        return self._keyring

    def has_identity(self) -> bool:
        """True when the environment holds a usable identity (commands that can do without one ask this)."""
        try:
            self.keyring()
        except IdentityMissing:
            return False
        except InvalidIdentity as exc:  # set but unusable: worth saying, since it then acts as if absent
            logger.warning("the age identity cannot be used, so encrypted backups stay encrypted here: %s", exc)
            return False
        return True

    def seal(self, source: Path | str, target: Path | str) -> Sealed:
        """Encrypt ``source`` into the new file ``target`` to this installation's recipients."""
        return encrypt_file(source, target, self.recipients)

    def open_decrypted(
        self, raw: BinaryIO, *, what: str, stored_sha256: str | None, recipients: Iterable[str] = ()
    ) -> BinaryIO:
        """The plaintext of the age stream ``raw`` (closed here), checked whole before it is returned."""
        try:
            keyring = self.keyring()
        except BaseException:
            raw.close()
            raise
        plain, _ = decrypt_to_temporary(raw, keyring, what=what, stored_sha256=stored_sha256, recipients=recipients)
        return plain


def is_age_file(head: bytes) -> bool:
    """True when ``head`` (the first bytes of an object) starts an age file."""
    return head.startswith(AGE_MAGIC)
