"""Secret values sealed at rest: authenticated encryption under one key file.

``SecretBox.seal(app_id, name, value)`` gives what the store keeps; ``open`` gives the value
back, or raises ``SecretKeyError`` (never garbage) when the key is not the one it was sealed
with or the bytes were changed. AES-256-GCM from ``cryptography`` with a fresh random 96-bit
nonce per seal; the app id and the name are the associated data, so a sealed value copied to
another app or name does not open either. Layout: ``b"\\x01"`` (format) + nonce + ciphertext
and tag (17 + 12 bytes more than the value).

The key is 32 random bytes in a file, as base64 text: ``load_key`` reads it, ``create_key``
writes a new one (mode 0600, never over an existing file). A key file others can read is
refused. ``digest(sealed)`` names a sealed value without revealing anything about the value
(it hashes the ciphertext, whose nonce is random): a fn's version changes with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fnagent.errors import SecretKeyError

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_V1 = b"\x01"


class SecretBox:
    """Seals and opens secret values with one key (32 bytes)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretKeyError(f"a secrets key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "<SecretBox>"

    @classmethod
    def generate(cls) -> SecretBox:
        """A box with a new random key (a store that lives in memory only)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    def seal(self, app_id: str, name: str, value: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return FORMAT_V1 + nonce + self._aead.encrypt(nonce, value, _context(app_id, name))

    def open(self, app_id: str, name: str, sealed: bytes) -> bytes:
        """The value; SecretKeyError when the key is wrong or ``sealed`` was altered."""
        if not sealed.startswith(FORMAT_V1) or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SecretKeyError(f'secret "{name}" is stored in a format this fnagent cannot read')
        nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, _context(app_id, name))
        except InvalidTag:
            raise SecretKeyError(
                f'secret "{name}" cannot be decrypted: the secrets key is not the one it was '
                "stored with (FN_SECRETS_KEY_FILE), or the store was altered"
            ) from None


def _context(app_id: str, name: str) -> bytes:
    return f"fnagent secret\0{app_id}\0{name}".encode()


def digest(sealed: bytes) -> str:
    """A short name for one sealed value (a new one at each seal); reveals nothing of it."""
    return hashlib.sha256(sealed).hexdigest()[:16]


def load_key(path: str) -> bytes:
    """The key in ``path``. SecretKeyError when it cannot be read, others may read it, or it
    does not hold a key; FileNotFoundError when there is no file."""
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretKeyError(
                f"the secrets key file {path} may be read by others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
            )
        with open(path, "rb") as file:
            text = file.read(4096)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretKeyError(f"cannot read the secrets key file {path}: {exc.strerror}") from None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"the secrets key file {path} does not hold a key ({KEY_BYTES} bytes as base64)"
        )
    return key


def create_key(path: str) -> bytes:
    """Write a new random key to ``path`` (mode 0600; its directory is made if missing).
    SecretKeyError when it cannot, or when a file is there already."""
    key = secrets.token_bytes(KEY_BYTES)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SecretKeyError(f"cannot create the secrets key file {path}: {exc.strerror}") from None
    try:
        os.write(fd, base64.b64encode(key) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return key
