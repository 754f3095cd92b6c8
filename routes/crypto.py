"""Encryption of credentials at rest: MultiFernet over settings.FIELD_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts. A value that no key decrypts raises
`CredentialDecryptionError` — never the ciphertext handed on as if it were the secret.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialDecryptionError(Exception):
    """A stored credential could not be decrypted with any configured key."""


@functools.cache
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: at least one Fernet key is needed.")
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded "
            "bytes; make one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptionError(
            "A stored credential cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS: the keys "
            "were changed without rotating. Restore the old key (as a later entry) and run "
            "`manage.py rotate_encryption_keys`."
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt a stored value with the first key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialDecryptionError(
            "A stored credential cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."
        ) from None
