"""patina_assets.encryption: recipients, identities from the environment, streaming age files that the age
command-line tool opens, and the difference between a wrong key and a damaged object."""

import hashlib
import os
import subprocess

import pytest
from pyrage import x25519
from support.age import age_cli

from patina_assets.cli import main
from patina_assets.encryption import (
    CiphertextDamaged,
    IdentityMissing,
    InvalidIdentity,
    InvalidRecipient,
    WrongIdentity,
    decrypt_to_file,
    encrypt_file,
    fingerprints,
    generate_identity,
    is_age_file,
    load_identities,
    parse_recipient,
    recipient_fingerprint,
)
from patina_assets.storage import StorageIntegrityError

VARIABLE = "PATINA_AGE_IDENTITY"


@pytest.fixture
def identity(tmp_path):
    new = generate_identity()
    path = tmp_path / "key.txt"
    path.write_text(new.file_text)
    return new, path


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(key)], check=True)
    return key, (tmp_path / "id_ed25519.pub").read_text().strip()


@pytest.fixture
def plain(tmp_path):
    """A few MB that do not compress to nothing, so the age file has many 64 KiB chunks."""
    path = tmp_path / "dump.sql.zst"
    path.write_bytes(os.urandom(3 << 20))
    return path


def seal(plain, tmp_path, *recipients):
    target = tmp_path / (plain.name + ".age")
    return encrypt_file(plain, target, [parse_recipient(text) for text in recipients]), target


def test_a_file_encrypted_to_several_recipients_opens_with_each_identity_and_the_age_cli(
    tmp_path, plain, identity, ssh_key
):
    new, key_path = identity
    ssh_private, ssh_public = ssh_key
    sealed, stored = seal(plain, tmp_path, new.recipient, ssh_public)
    assert is_age_file(stored.read_bytes()[:64])
    assert sealed.plain_sha256 == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert sealed.stored_sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert sealed.stored_bytes == stored.stat().st_size > sealed.plain_bytes == plain.stat().st_size

    for variable_value in (str(key_path), str(ssh_private)):
        keyring = load_identities(VARIABLE, {VARIABLE: variable_value})
        out = tmp_path / f"opened-{len(os.listdir(tmp_path))}"
        with open(stored, "rb") as source:
            opened = decrypt_to_file(source, out, keyring, what="the test object", stored_sha256=sealed.stored_sha256)
        assert opened == sealed and out.read_bytes() == plain.read_bytes()

    for key in (key_path, ssh_private):
        result = subprocess.run([age_cli(), "-d", "-i", str(key), str(stored)], capture_output=True, check=True)
        assert result.stdout == plain.read_bytes()


def test_the_identity_can_be_the_variables_text_and_keygen_writes_what_age_reads(tmp_path, capsys):
    assert main(["keygen", "-o", str(tmp_path / "key.txt")]) == 0
    assert (tmp_path / "key.txt").stat().st_mode & 0o777 == 0o600
    recipient = capsys.readouterr().err.split("Public key: ")[1].split()[0]
    public = subprocess.run(
        ["age-keygen", "-y", str(tmp_path / "key.txt")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert public == recipient
    keyring = load_identities(VARIABLE, {VARIABLE: (tmp_path / "key.txt").read_text()})
    assert keyring.fingerprints == (recipient_fingerprint(recipient),)
    assert main(["keygen", "-o", str(tmp_path / "key.txt")]) == 2  # never over an existing key


def test_ssh_fingerprints_are_those_ssh_keygen_prints(ssh_key):
    private, public = ssh_key
    printed = subprocess.run(["ssh-keygen", "-l", "-f", f"{private}.pub"], capture_output=True, text=True).stdout
    assert recipient_fingerprint(public) == f"ssh-ed25519 {printed.split()[1]}"
    assert load_identities(VARIABLE, {VARIABLE: str(private)}).fingerprints == (recipient_fingerprint(public),)


def test_a_wrong_identity_is_named_as_such_with_the_recipients_the_object_needs(tmp_path, plain, identity):
    new, _ = identity
    sealed, stored = seal(plain, tmp_path, new.recipient)
    other = generate_identity()
    keyring = load_identities(VARIABLE, {VARIABLE: other.file_text})
    with open(stored, "rb") as source, pytest.raises(WrongIdentity) as caught:
        decrypt_to_file(
            source,
            tmp_path / "out",
            keyring,
            what="daily/x.age",
            stored_sha256=sealed.stored_sha256,
            recipients=fingerprints([new.recipient]),
        )
    message = str(caught.value)
    assert recipient_fingerprint(new.recipient) in message and recipient_fingerprint(other.recipient) in message
    assert f"${VARIABLE}" in message and "AGE-SECRET-KEY" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["header", "first chunk", "last chunk"])
def test_a_tampered_byte_is_damage_and_no_plaintext_is_left(tmp_path, plain, identity, where):
    new, key_path = identity
    sealed, stored = seal(plain, tmp_path, new.recipient)
    data = bytearray(stored.read_bytes())
    offset = {"header": 40, "first chunk": 400, "last chunk": len(data) - 5}[where]
    data[offset] ^= 0x01
    stored.write_bytes(bytes(data))
    keyring = load_identities(VARIABLE, {VARIABLE: str(key_path)})
    with open(stored, "rb") as source, pytest.raises(CiphertextDamaged) as caught:
        decrypt_to_file(source, tmp_path / "out", keyring, what="daily/x.age", stored_sha256=sealed.stored_sha256)
    assert isinstance(caught.value, StorageIntegrityError)
    assert "damaged" in str(caught.value) and not (tmp_path / "out").exists()
    refused = subprocess.run([age_cli(), "-d", "-i", str(key_path), str(stored)], capture_output=True)
    assert refused.returncode != 0  # age itself refuses it too


def test_a_truncated_object_is_damage_even_without_a_recorded_digest(tmp_path, plain, identity):
    new, key_path = identity
    _, stored = seal(plain, tmp_path, new.recipient)
    stored.write_bytes(stored.read_bytes()[: -(100 << 10)])
    keyring = load_identities(VARIABLE, {VARIABLE: str(key_path)})
    with open(stored, "rb") as source, pytest.raises(CiphertextDamaged):
        decrypt_to_file(source, tmp_path / "out", keyring, what="daily/x.age")
    assert not (tmp_path / "out").exists()


def test_a_read_error_is_raised_as_itself_not_as_damage(tmp_path, plain, identity):
    new, key_path = identity
    sealed, stored = seal(plain, tmp_path, new.recipient)

    class Failing:
        def __init__(self, raw):
            self.raw, self.calls = raw, 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls == 5:
                raise ConnectionResetError("the network went away")
            return self.raw.read(n)

        def close(self):
            self.raw.close()

    keyring = load_identities(VARIABLE, {VARIABLE: str(key_path)})
    with pytest.raises(ConnectionResetError):
        decrypt_to_file(
            Failing(open(stored, "rb")), tmp_path / "out", keyring, what="x", stored_sha256=sealed.stored_sha256
        )
    assert not (tmp_path / "out").exists()


def test_missing_and_unreadable_identities_say_what_to_set(tmp_path):
    with pytest.raises(IdentityMissing, match=rf"\${VARIABLE} is not set.*export {VARIABLE}="):
        load_identities(VARIABLE, {})
    with pytest.raises(InvalidIdentity, match="does not exist"):
        load_identities(VARIABLE, {VARIABLE: str(tmp_path / "nope.txt")})
    (tmp_path / "bad.txt").write_text("# a comment\nnot a key\n")
    with pytest.raises(InvalidIdentity, match="line 2 of .*bad.txt") as caught:
        load_identities(VARIABLE, {VARIABLE: str(tmp_path / "bad.txt")})
    assert "not a key" not in str(caught.value)  # a mistyped secret is never echoed
    with pytest.raises(InvalidIdentity, match="holds no identity"):
        load_identities(VARIABLE, {VARIABLE: "# only a comment"})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("age1nope", "not a valid public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "not an age recipient"),
        ("hello", "not an age recipient"),
        # a fresh key each run: its id is fixed, so every pytest-xdist worker collects the same test
        pytest.param(str(x25519.Identity.generate()), "this is a private key", id="a-private-key"),
    ],
)
def test_bad_recipients_are_refused_with_the_fix(text, expected):
    with pytest.raises(InvalidRecipient, match=expected) as caught:
        parse_recipient(text)
    assert "AGE-SECRET-KEY" not in str(caught.value)
