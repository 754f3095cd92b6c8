"""Gateway keys: `gw-<prefix>_<secret>`, stored as a SHA-256 hash, shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "gw-"
PREFIX_LENGTH = 8


@dataclass(frozen=True, slots=True)
class NewKey:
    plaintext: str  # shown once, never stored
    prefix: str
    hashed: str


def hash_key(plaintext: str) -> str:
    # The secret part has 256 bits of entropy, so a fast unsalted hash is safe and allows lookups.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> NewKey:
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    plaintext = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(plaintext=plaintext, prefix=prefix, hashed=hash_key(plaintext))


def parse_bearer(header: str | None) -> str | None:
    """The key from an `Authorization: Bearer <key>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
