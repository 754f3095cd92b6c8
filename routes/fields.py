"""EncryptedJSONField: a JSON object stored as one Fernet token. No lookups on it, by design."""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from . import crypto


class EncryptedJSONField(models.TextField):
    """Stores a dict of secret strings encrypted; the database only ever sees the Fernet token."""

    description = "A JSON object encrypted with the project's Fernet keys"
    # For django-stubs: the Python value is the dict, not the stored text.
    _pyi_private_set_type: dict[str, str]  # type: ignore[assignment]
    _pyi_private_get_type: dict[str, str]  # type: ignore[assignment]

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return crypto.encrypt(json.dumps(value, sort_keys=True))

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> dict[str, str] | None:
        if value is None:
            return None
        return json.loads(crypto.decrypt(value))

    def to_python(self, value: Any) -> Any:
        if value is None or isinstance(value, dict):
            return value
        return json.loads(value)

    def get_lookup(self, lookup_name: str):  # type: ignore[no-untyped-def]
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        return None  # ciphertext is randomised: equality lookups could never match

    def value_to_string(self, obj: models.Model) -> str:
        return "***"  # dumpdata and serializers never see the secret
