"""The per-install secret: 32 random bytes in the data folder, created on first use, readable only
by the owner (0600).

It keys the user-id pseudonyms and the `hashed` trace content, so that someone holding the database
but not this file cannot confirm a guess ("is u_1f2e... alice@example.com?") by hashing it. Losing
it changes every pseudonym (sticky rollout assignments reshuffle, old traces no longer match new
ones); replicas that share a database must share the file too.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

SECRET_FILE = "install.secret"


class InstallSecretError(Exception):
    """The secret file exists but is not usable."""


def install_secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    if not path.exists():
        _create(path)
    return _read(path)


def derive_key(secret: bytes, purpose: str) -> bytes:
    """One key per use, so a pseudonym and a content hash of the same text never coincide."""
    return hmac.new(secret, f"lockgate:{purpose}".encode(), hashlib.sha256).digest()


def _create(path: Path) -> None:
    """Written to a private temporary file and linked into place: several workers starting at once
    all end up reading the one secret that won, never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first; theirs is the secret
    finally:
        tmp.unlink()


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise InstallSecretError(
            f"{path} is not a Lockgate install secret (64 hexadecimal characters). Restore it from a backup; "
            "deleting it makes a new secret, which changes every user pseudonym."
        )
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; run `chmod 600 %s`", path, path)
    return secret
