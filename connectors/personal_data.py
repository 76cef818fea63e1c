"""The personal-data vault: a key per data subject, wrapped by a master key, sealing and opening
personal fields (``ledger.personal``), erasure by destroying the key, and master key rotation
without downtime. docs/security.md, "Personal data".

Keys:
- a **data key** per (network, subject): 32 random bytes, made when the subject's first value
  is sealed, stored in PostgreSQL (``data_subject_keys``, migration 035) only wrapped with
  AES key wrap (RFC 3394) under a master key;
- **master keys** live outside the database, in a key file (``EVLEDGER_MASTER_KEY_FILE``; a
  Kubernetes secret in a deployment), one per line as ``<id> <base64 of 32 bytes>``, the first
  one current. The database holds which master key wrapped each data key, never the key.

Sealing is AES-256-GCM with the field's place as associated data (``network|subject|field``:
a sealed value moved to another field or subject does not open). The nonce is derived, not
drawn: HMAC-SHA256(data key, event id, field, value), so a retried publish of the same event
seals to the same bytes and the consumers' content fingerprint sees a duplicate, not an
``EVENT_ID_CONFLICT``. Distinct values never share a nonce (short of an HMAC collision).

Rotation (``rotate``) adds a new current master key to the file, re-wraps every data key under
it in small transactions and then drops the old keys from the file. Processes reading the file
reload it when a data key names a master key they have not loaded, so they keep working through
the rotation without a restart.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from ledger import personal
from ledger.card_numbers import contains_card_number
from ledger.errors import LedgerError, ValidationError
from ledger.pseudonyms import Pseudonymizer
from ledger.validation import CardNumberInField

Conn = psycopg.Connection[Any]
KEY_BYTES = 32


class MasterKeyError(LedgerError):
    """The master key file is missing, unreadable, too open or malformed."""

    code = "MASTER_KEY"


class SubjectErased(ValidationError):
    """The data subject was erased: nothing new is sealed for it."""

    code = "SUBJECT_ERASED"


class PersonalValueRefused(ValidationError):
    """A plain personal value that cannot be sealed (too long, control characters, a card
    number)."""

    code = "INVALID_PERSONAL_VALUE"


class SealBroken(LedgerError):
    """A sealed value that does not open under its subject's key: altered, or moved from
    another field or subject."""

    code = "PERSONAL_DATA_UNREADABLE"


# -- master keys --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Keyring:
    """Master keys by id; ``current`` wraps new data keys, the others only unwrap."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def current(self) -> tuple[str, bytes]:
        return self.keys[0]

    def get(self, key_id: str) -> bytes | None:
        return next((k for i, k in self.keys if i == key_id), None)

    def render(self) -> str:
        lines = ["# evledger master keys: <id> <base64 key>; the first is current. Keep secret."]
        lines += [f"{i} {base64.b64encode(k).decode()}" for i, k in self.keys]
        return "\n".join(lines) + "\n"


def new_master_key() -> tuple[str, bytes]:
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return f"mk-{stamp}-{secrets.token_hex(4)}", secrets.token_bytes(KEY_BYTES)


def _read_secret(path: Path, what: str, init: str, setting: str) -> str:
    """The text of a key file, refused when missing, unreadable or open to others (group
    read is allowed: Kubernetes mounts secrets for an fsGroup)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        raise MasterKeyError(
            f"no {what} file at {path}: create one with `evledger keys {init}` "
            f"(or point EVLEDGER_{setting} at yours)",
            path=str(path),
        ) from None
    except OSError as exc:
        raise MasterKeyError(f"cannot read the {what} file {path}: {exc}") from None
    if mode & 0o027:
        raise MasterKeyError(
            f"the {what} file {path} is open to others (mode {mode & 0o777:o}): chmod 600 it",
            path=str(path),
        )
    return text


def read_keyring(path: Path) -> Keyring:
    """The key file's keys; MasterKeyError saying what to do when it cannot be used."""
    text = _read_secret(path, "master key", "master-init", "MASTER_KEY_FILE")
    keys: list[tuple[str, bytes]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        key = _decode_key(parts[1]) if len(parts) == 2 else None
        if key is None:
            raise MasterKeyError(
                f"{path} line {number}: expected '<id> <base64 of {KEY_BYTES} bytes>'",
                path=str(path),
            )
        keys.append((parts[0], key))
    if not keys:
        raise MasterKeyError(f"{path} holds no master key", path=str(path))
    return Keyring(tuple(keys))


def _decode_key(text: str) -> bytes | None:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


def _write_secret(path: Path, text: str, *, exclusive: bool) -> bool:
    """Write a key file with mode 600, its bytes on disk before it counts. ``exclusive``:
    create it, or return False when it exists (O_EXCL: two makers cannot both win);
    otherwise replace it atomically (a reader sees the old file or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path if exclusive else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if exclusive:
            return False
        raise
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    if not exclusive:
        os.replace(target, path)
    return True


def write_keyring(path: Path, keyring: Keyring, *, exclusive: bool = False) -> None:
    """Write the key file atomically with mode 600 (``exclusive``: refuse to replace one)."""
    if not _write_secret(path, keyring.render(), exclusive=exclusive):
        raise MasterKeyError(f"{path} exists already; rotate with `evledger keys rotate-master`")


def ensure_key_file(path: Path) -> bool:
    """Make a key file with one new master key unless ``path`` exists; True if made."""
    return _write_secret(path, Keyring((new_master_key(),)).render(), exclusive=True)


class KeyFile:
    """The key file as a process sees it: read once, read again when asked for a master key it
    does not hold (another process rotated), thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ring: Keyring | None = None

    def keyring(self) -> Keyring:
        with self._lock:
            if self._ring is None:
                self._ring = read_keyring(self.path)
            return self._ring

    def key(self, key_id: str) -> bytes:
        key = self.keyring().get(key_id)
        if key is None:
            with self._lock:
                self._ring = read_keyring(self.path)
            key = self._ring.get(key_id)
        if key is None:
            raise MasterKeyError(
                f"master key {key_id!r} is not in {self.path}: a data key is wrapped under it; "
                f"restore the key file that holds it",
                key_id=key_id,
            )
        return key


# -- the vault ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SubjectState:
    network_id: str
    subject_id: str
    master_key_id: str | None
    created_at: datetime
    erased_at: datetime | None
    erased_by: str | None
    erased_reason: str | None


@dataclass(frozen=True, slots=True)
class Rotation:
    new_key_id: str
    rewrapped: int
    retired: tuple[str, ...]


class Vault:
    """Seals and opens personal fields with the data keys in PostgreSQL."""

    def __init__(self, keys: KeyFile) -> None:
        self.keys = keys

    # sealing and opening
    def seal(
        self, conn: Conn, network: str, subject: str, field: str, plain: str, event_id: str
    ) -> str:
        """``plain`` sealed for ``subject``'s ``field``; makes the subject's key on first use.
        Raises SubjectErased, PersonalValueRefused."""
        _check_plain(field, plain)
        key = self._data_key(conn, network, subject, create=True)
        assert key is not None
        mac = hmac.new(key, b"\x00".join(x.encode() for x in (event_id, field, plain)), "sha256")
        nonce = mac.digest()[: personal.NONCE_BYTES]
        box = AESGCM(key).encrypt(nonce, plain.encode(), _aad(network, subject, field))
        text = base64.urlsafe_b64encode(nonce + box).rstrip(b"=").decode()
        return personal.SEALED_PREFIX + text

    def open(self, conn: Conn, network: str, subject: str, field: str, sealed: str) -> str:
        """The plain value, or ``personal.ERASED`` once the subject was erased. Raises
        SealBroken when the value does not open under the subject's key."""
        key = self._data_key(conn, network, subject, create=False)
        if key is None:
            return personal.ERASED
        return _open(key, network, subject, field, sealed)

    def opener(
        self, conn: Conn, network: str, subject: str
    ) -> Callable[[str, str | None], str | None]:
        """``open`` for many fields of one subject with one key lookup."""
        key = self._data_key(conn, network, subject, create=False)

        def read(field: str, sealed: str | None) -> str | None:
            if sealed is None:
                return None
            return personal.ERASED if key is None else _open(key, network, subject, field, sealed)

        return read

    # erasure
    def erase(self, conn: Conn, network: str, subject: str, actor: str, reason: str) -> bool:
        """Destroy the subject's data key (crypto-shredding); False if it was erased already.
        A subject never seen is recorded as erased, so nothing is sealed for it later."""
        row = conn.execute(
            "INSERT INTO data_subject_keys (network_id, subject_id, erased_at, erased_by,"
            " erased_reason) VALUES (%s, %s, now(), %s, %s)"
            " ON CONFLICT (network_id, subject_id) DO UPDATE SET wrapped_key = NULL,"
            " master_key_id = NULL, erased_at = now(), erased_by = EXCLUDED.erased_by,"
            " erased_reason = EXCLUDED.erased_reason"
            " WHERE data_subject_keys.erased_at IS NULL RETURNING 1",
            (network, subject, actor, reason),
        ).fetchone()
        if row is not None:
            conn.execute(
                "INSERT INTO admin_audit (actor, action, network_id, detail)"
                " VALUES (%s, 'subject.erase', %s, %s::jsonb)",
                (actor, network, orjson.dumps({"subject": subject, "reason": reason}).decode()),
            )
        return row is not None

    def state(self, conn: Conn, network: str, subject: str) -> SubjectState | None:
        row = conn.execute(
            "SELECT network_id, subject_id, master_key_id, created_at, erased_at, erased_by,"
            " erased_reason FROM data_subject_keys WHERE network_id = %s AND subject_id = %s",
            (network, subject),
        ).fetchone()
        return None if row is None else SubjectState(*row)

    # rotation
    def rotate(
        self,
        connect: Callable[[], Conn],
        actor: str,
        *,
        batch: int = 500,
        retire: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> Rotation:
        """Make a new current master key, re-wrap every data key under it, batch by batch
        (each its own transaction), then drop the old master keys from the file (``retire``).
        Safe to run again after a crash: it resumes with the keys not yet re-wrapped."""
        path = self.keys.path
        ring = read_keyring(path)
        new_id, new_key = new_master_key()
        write_keyring(path, Keyring(((new_id, new_key), *ring.keys)))
        with connect() as conn:
            total = _count_old(conn, new_id)
        done = 0
        while True:
            with connect() as conn, conn.transaction():
                rows = conn.execute(
                    "SELECT network_id, subject_id, wrapped_key, master_key_id"
                    " FROM data_subject_keys WHERE wrapped_key IS NOT NULL"
                    " AND master_key_id <> %s LIMIT %s FOR UPDATE SKIP LOCKED",
                    (new_id, batch),
                ).fetchall()
                for network, subject, wrapped, old_id in rows:
                    data_key = _unwrap(self.keys.key(old_id), bytes(wrapped), old_id)
                    conn.execute(
                        "UPDATE data_subject_keys SET wrapped_key = %s, master_key_id = %s,"
                        " rewrapped_at = now() WHERE network_id = %s AND subject_id = %s",
                        (aes_key_wrap(new_key, data_key), new_id, network, subject),
                    )
            if not rows:
                break
            done += len(rows)
            if progress is not None:
                progress(done, total)
        retired: tuple[str, ...] = ()
        with connect() as conn:
            if retire and _count_old(conn, new_id) == 0:
                retired = tuple(i for i, _ in ring.keys)
                write_keyring(path, Keyring(((new_id, new_key),)))
            detail = {"new_master_key": new_id, "rewrapped": done, "retired": list(retired)}
            conn.execute(
                "INSERT INTO admin_audit (actor, action, detail)"
                " VALUES (%s, 'master-key.rotate', %s::jsonb)",
                (actor, orjson.dumps(detail).decode()),
            )
        return Rotation(new_id, done, retired)

    def _data_key(self, conn: Conn, network: str, subject: str, *, create: bool) -> bytes | None:
        row = self._row(conn, network, subject)
        if row is None and create:
            master_id, master = self.keys.keyring().current
            conn.execute(
                "INSERT INTO data_subject_keys (network_id, subject_id, wrapped_key,"
                " master_key_id) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (network, subject, aes_key_wrap(master, secrets.token_bytes(KEY_BYTES)),
                 master_id),
            )  # fmt: skip
            row = self._row(conn, network, subject)
        if row is None:
            return None
        wrapped, master_id, erased_at = row
        if erased_at is not None:
            if create:
                raise SubjectErased(
                    f"data subject {subject!r} of network {network!r} was erased on "
                    f"{erased_at:%Y-%m-%d}: no personal data is kept for it any more",
                    subject=subject,
                )
            return None
        return _unwrap(self.keys.key(master_id), bytes(wrapped), master_id)

    @staticmethod
    def _row(conn: Conn, network: str, subject: str) -> Any:
        return conn.execute(
            "SELECT wrapped_key, master_key_id, erased_at FROM data_subject_keys"
            " WHERE network_id = %s AND subject_id = %s",
            (network, subject),
        ).fetchone()


def _aad(network: str, subject: str, field: str) -> bytes:
    return f"{network}|{subject}|{field}".encode()


def _open(key: bytes, network: str, subject: str, field: str, sealed: str) -> str:
    if not personal.is_sealed(sealed):
        raise SealBroken(f"{field} of {subject!r} is not a sealed value", subject=subject)
    raw = base64.urlsafe_b64decode(sealed[len(personal.SEALED_PREFIX) :] + "==")
    try:
        plain = AESGCM(key).decrypt(
            raw[: personal.NONCE_BYTES], raw[personal.NONCE_BYTES :], _aad(network, subject, field)
        )
    except InvalidTag:
        raise SealBroken(
            f"{field} of {subject!r} does not open under the subject's key: altered, or sealed "
            f"for another field or subject",
            subject=subject,
            field=field,
        ) from None
    return plain.decode()


def _unwrap(master: bytes, wrapped: bytes, master_id: str) -> bytes:
    try:
        return aes_key_unwrap(master, wrapped)
    except InvalidUnwrap:
        raise MasterKeyError(
            f"a data key does not unwrap under master key {master_id!r}: the key file holds "
            f"another key under that id",
            key_id=master_id,
        ) from None


def _count_old(conn: Conn, new_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM data_subject_keys WHERE wrapped_key IS NOT NULL"
        " AND master_key_id <> %s",
        (new_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def _check_plain(field: str, plain: str) -> None:
    if field not in personal.PERSONAL_FIELDS:
        raise PersonalValueRefused(f"{field!r} is not a personal field", field=field)
    if not isinstance(plain, str) or len(plain) > personal.PLAIN_MAX:
        raise PersonalValueRefused(
            f"{field}: a text of at most {personal.PLAIN_MAX} characters", field=field
        )
    if any(not (c.isprintable() or c in "\n\r\t") for c in plain):  # the text rule's set
        raise PersonalValueRefused(
            f"{field}: control or formatting characters are not allowed", field=field
        )
    if contains_card_number(plain):
        raise CardNumberInField(
            f"{field}: holds what looks like a card number (a Luhn-valid run of 13-19 digits);"
            f" card data never enters evledger",
            field=field,
        )


_PERSONAL_OF: dict[type, tuple[str, ...]] = {}
"""The personal fields of each event class."""


def seal_event(conn: Conn, vault: Vault, event: Any) -> Any:
    """``event`` with each plain personal field sealed for its subject (``subject_id``) under
    its own event id; sealed fields are kept as they are. Raises SubjectErased,
    PersonalValueRefused, CardNumberInField (with the field) and MasterKeyError."""
    fields = _PERSONAL_OF.get(type(event))
    if fields is None:
        fields = _PERSONAL_OF[type(event)] = tuple(
            sorted(personal.PERSONAL_FIELDS & {f.name for f in dataclasses.fields(event)})
        )
    if not fields:  # most events carry none: nothing to look at
        return event
    names = [f for f in fields if isinstance(getattr(event, f, None), str)]
    plain = {f: getattr(event, f) for f in names if not personal.is_sealed(getattr(event, f))}
    if not plain:
        return event
    env = event.envelope
    sealed = {
        f: vault.seal(conn, env.network_id, event.subject_id, f, value, env.event_id)
        for f, value in sorted(plain.items())
    }
    return dataclasses.replace(event, **sealed)


# -- the pseudonym key --------------------------------------------------------------------------
def read_pseudonymizer(path: Path) -> Pseudonymizer:
    """The deployment's token pseudonymizer from its key file (base64 of 32 bytes, mode 600).
    The key never rotates: a new key would give every token a new pseudonym and cut the fraud
    rules' history in two."""
    text = _read_secret(path, "pseudonym key", "pseudonym-init", "PSEUDONYM_KEY_FILE")
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
    key = _decode_key(lines[0]) if len(lines) == 1 else None
    if key is None:
        raise MasterKeyError(f"{path}: expected one line, the base64 of {KEY_BYTES} bytes")
    return Pseudonymizer(key)


def pseudonymizer_if_configured(path: Path) -> Pseudonymizer | None:
    """The pseudonymizer, or None where its key file is missing or unusable: for readers that
    then look a typed token up as typed (the API under a read-only role, the CLI)."""
    try:
        return read_pseudonymizer(path)
    except MasterKeyError:
        return None


def ensure_pseudonym_key(path: Path) -> bool:
    """Make the pseudonym key file unless ``path`` exists; True if made."""
    key = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    header = "# evledger pseudonym key (driver tokens). Keep secret; never rotate.\n"
    return _write_secret(path, f"{header}{key}\n", exclusive=True)
