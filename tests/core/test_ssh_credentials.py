"""SSH credentials beyond test_ssh_access.py: the password hash's encoded form and what
it refuses, public key lines of every supported type, and that one organisation's keys
and one sandbox's password open nothing else, against a real SQLite store.

Keys are made here as their wire form (`string type, string data`), so these tests need
no ssh-keygen; the fingerprint is checked against OpenSSH's definition instead.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from datetime import UTC, datetime

import pytest

from sandlot.core.passwords import hash_password, verify_password
from sandlot.core.ssh_access import KEY_TYPES, SshAccess, parse_public_key
from sandlot.domain.states import SandboxStatus
from sandlot.errors import InvalidConfigError, InvalidStateError, SshKeyNotFoundError
from sandlot.store import keys
from sandlot.store.database import Database
from sandlot.store.tables import SandboxRow


def wire(kind: str, body: bytes | None = None) -> bytes:
    """A key's wire form: its type and some key material, each length-prefixed."""
    material = os.urandom(32) if body is None else body
    return b"".join(struct.pack("!I", len(part)) + part for part in (kind.encode(), material))


def line(blob: bytes, kind: str | None = None, comment: str = "me@laptop") -> str:
    declared = kind or blob[4 : 4 + struct.unpack_from("!I", blob)[0]].decode()
    return f"{declared} {base64.b64encode(blob).decode()} {comment}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


@pytest.fixture
def access(db: Database) -> SshAccess:
    return SshAccess(db)


def add_org(access: SshAccess, name: str) -> str:
    with access.db.session() as s:
        return keys.create_org(s, name).id


def add_sandbox(
    access: SshAccess,
    org_id: str,
    sandbox_id: str,
    *,
    status: SandboxStatus = SandboxStatus.RUNNING,
    password_hash: str | None = None,
) -> None:
    with access.db.session() as s:
        s.add(
            SandboxRow(
                id=sandbox_id, org_id=org_id, template="base", template_digest="d", rootfs="/",
                status=status.value, vcpus=1, memory_mb=512, disk_mb=1024, env={}, meta={},
                idle_timeout=600, created_at=datetime.now(UTC), password_hash=password_hash,
            )
        )  # fmt: skip


# ---- passwords ----------------------------------------------------------------------------


def test_the_encoded_form_names_its_scheme_parameters_salt_and_hash() -> None:
    scheme, n, r, p, salt, derived = hash_password("correct horse").split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1)
    salt_bytes = base64.b64decode(salt + "=" * (-len(salt) % 4))
    expected = hashlib.scrypt(b"correct horse", salt=salt_bytes, n=2**14, r=8, p=1, dklen=32)
    assert len(salt_bytes) == 16 and derived == b64(expected)


def test_a_hash_made_with_other_parameters_still_verifies() -> None:
    """Raising the parameters later must not lock out passwords stored before."""
    salt = os.urandom(16)
    derived = hashlib.scrypt(b"old-password", salt=salt, n=2**10, r=4, p=2, dklen=32)
    encoded = "$".join(("scrypt", "1024", "4", "2", b64(salt), b64(derived)))
    assert verify_password("old-password", encoded)
    assert not verify_password("old-passwore", encoded)


@pytest.mark.parametrize(
    "password", ["", " ", "p", "pässwörd-🔑", "x" * 1000, "with$dollar$signs", "tab\there"]
)
def test_any_password_verifies_against_its_own_hash(password: str) -> None:
    assert verify_password(password, hash_password(password))


@pytest.mark.parametrize(
    "attempt",
    ["Mypass123", "mypass123 ", " mypass123", "mypass12", "mypass1234", "", "mypass123\n"],
)
def test_a_near_miss_does_not_verify(attempt: str) -> None:
    assert not verify_password(attempt, hash_password("mypass123"))


def tampered(field: int, value: str) -> str:
    parts = hash_password("mypass123").split("$")
    parts[field] = value
    return "$".join(parts)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "scrypt",
        "scrypt$16384$8$1$c2FsdA",
        hash_password("mypass123") + "$extra",
        tampered(0, "bcrypt"),
        tampered(1, "sixteen"),
        tampered(1, "1000"),  # scrypt's N must be a power of two
        tampered(3, "0"),
        tampered(4, "a"),  # a salt that is not base64
        tampered(4, b64(os.urandom(16))),
        tampered(5, b64(os.urandom(32))),
        tampered(5, ""),
        tampered(5, "a"),  # one character more than whole base64: it used to raise
        tampered(5, "abcde"),
    ],
)
def test_a_malformed_or_tampered_hash_refuses_without_raising(encoded: str) -> None:
    assert verify_password("mypass123", encoded) is False


# ---- public key lines ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KEY_TYPES))
def test_every_supported_type_parses_and_fingerprints_as_openssh_does(kind: str) -> None:
    blob = wire(kind)
    parsed = parse_public_key(f"  {line(blob)}  \n")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert parsed.fingerprint == f"SHA256:{digest}"
    assert parsed.public_key == f"{kind} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize(
    "text",
    [
        line(wire("ssh-rsa"), kind="ssh-ed25519"),  # the data is another type's
        line(wire("ssh-dss")),  # DSA is not supported
        line(wire("ssh-ed25519"), kind="SSH-ED25519"),
        "no-pty " + line(wire("ssh-ed25519")),  # an authorized_keys line, options first
        "ssh-ed25519 " + b64(b"\x00\x00"),  # too short for its length
        "ssh-ed25519 " + base64.b64encode(b"\xff\xff\xff\xff").decode(),
    ],
    ids=["type-mismatch", "dsa", "upper-case", "options", "truncated", "huge-length"],
)
def test_a_key_line_that_is_not_what_it_says_is_refused(text: str) -> None:
    with pytest.raises(InvalidConfigError) as caught:
        parse_public_key(text)
    assert caught.value.details == {"field": "publicKey"} and caught.value.status == 400


def test_the_comment_does_not_make_another_key(access: SshAccess) -> None:
    org = add_org(access, "acme")
    blob = wire("ssh-ed25519")
    access.add_key(org, "laptop", line(blob, comment="me@laptop"))
    with pytest.raises(InvalidStateError, match="registered already") as caught:
        access.add_key(org, "desktop", line(blob, comment="me@desktop"))
    assert caught.value.code == "INVALID_STATE" and caught.value.status == 409
    assert not caught.value.retryable and caught.value.details["name"] == "laptop"


# ---- whose keys open what -----------------------------------------------------------------


def test_listing_and_deleting_keys_stay_inside_the_organisation(access: SshAccess) -> None:
    ours, theirs = add_org(access, "ours"), add_org(access, "theirs")
    mine = access.add_key(ours, "laptop", line(wire("ssh-ed25519")))
    other = access.add_key(theirs, "laptop", line(wire("ssh-ed25519")))
    assert [k.id for k in access.list_keys(ours)] == [mine.id]
    assert [k.id for k in access.list_keys(theirs)] == [other.id]
    for ref in (mine.id, "nope"):
        with pytest.raises(SshKeyNotFoundError) as caught:
            access.delete_key(theirs, ref)
        assert caught.value.details == {"key": ref} and caught.value.code == "SSH_KEY_NOT_FOUND"
    assert [k.id for k in access.list_keys(ours)] == [mine.id]
    assert access.delete_key(theirs, "laptop").id == other.id  # by name: their own
    assert [k.id for k in access.list_keys(ours)] == [mine.id]


@pytest.mark.parametrize("by", ["id", "name"])
def test_a_key_registered_twice_is_removed_from_one_organisation_only(
    access: SshAccess, by: str
) -> None:
    ours, theirs = add_org(access, "ours"), add_org(access, "theirs")
    add_sandbox(access, ours, "sbx-ours000001")
    add_sandbox(access, theirs, "sbx-theirs0001")
    blob = wire("ssh-ed25519")
    ours_key = access.add_key(ours, "shared", line(blob))
    access.add_key(theirs, "shared", line(blob))
    access.delete_key(ours, ours_key.id if by == "id" else "shared")
    assert not access.key_allowed("sbx-ours000001", blob)
    assert access.key_allowed("sbx-theirs0001", blob)


def test_a_key_opens_every_sandbox_of_its_organisation_and_no_other(access: SshAccess) -> None:
    ours, theirs = add_org(access, "ours"), add_org(access, "theirs")
    for sandbox_id in ("sbx-ours000001", "sbx-ours000002"):
        add_sandbox(access, ours, sandbox_id)
    add_sandbox(access, theirs, "sbx-theirs0001")
    blob = wire("ssh-ed25519")
    access.add_key(ours, "laptop", line(blob))
    assert access.key_allowed("sbx-ours000001", blob)
    assert access.key_allowed("sbx-ours000002", blob)
    assert not access.key_allowed("sbx-theirs0001", blob)
    assert not access.key_allowed("sbx-ours000001", wire("ssh-ed25519"))  # an unregistered key


@pytest.mark.parametrize(
    "username",
    ["", "sbx-ours00000", "sbx-ours0000011", "SBX-OURS000001", "sbx-ours000001 ", "../sbx"],
)
def test_a_login_name_that_names_no_sandbox_opens_nothing(access: SshAccess, username: str) -> None:
    org = add_org(access, "ours")
    add_sandbox(access, org, "sbx-ours000001", password_hash=hash_password("pw-ours"))
    blob = wire("ssh-ed25519")
    access.add_key(org, "laptop", line(blob))
    assert access.owner(username) is None
    assert not access.key_allowed(username, blob)


@pytest.mark.parametrize("status", list(SandboxStatus))
def test_only_a_terminated_sandbox_takes_no_more_logins(
    access: SshAccess, status: SandboxStatus
) -> None:
    org = add_org(access, "ours")
    add_sandbox(access, org, "sbx-ours000001", status=status)
    blob = wire("ssh-ed25519")
    access.add_key(org, "laptop", line(blob))
    gone = status is SandboxStatus.TERMINATED
    assert access.owner("sbx-ours000001") == (None if gone else org)
    assert access.key_allowed("sbx-ours000001", blob) is not gone


# ---- passwords of sandboxes ---------------------------------------------------------------


async def test_a_sandboxs_password_opens_that_sandbox_alone(access: SshAccess) -> None:
    ours, theirs = add_org(access, "ours"), add_org(access, "theirs")
    passwords = {"sbx-ours000001": "first-pass", "sbx-ours000002": "second-pass"}
    for sandbox_id, password in passwords.items():
        add_sandbox(access, ours, sandbox_id, password_hash=hash_password(password))
    add_sandbox(access, theirs, "sbx-theirs0001", password_hash=hash_password("their-pass"))
    every = {**passwords, "sbx-theirs0001": "their-pass"}
    for sandbox_id in every:
        for password in every.values():
            allowed = await access.password_allowed(sandbox_id, password)
            assert allowed is (every[sandbox_id] == password)


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "plain-password"])
async def test_a_sandbox_without_a_usable_hash_takes_no_password(
    access: SshAccess, stored: str | None
) -> None:
    org = add_org(access, "ours")
    add_sandbox(access, org, "sbx-ours000001", password_hash=stored)
    for attempt in ("plain-password", "", "not-a-hash"):
        assert not await access.password_allowed("sbx-ours000001", attempt)


async def test_a_password_for_a_sandbox_that_is_not_there_is_refused(access: SshAccess) -> None:
    assert not await access.password_allowed("sbx-missing001", "anything")
