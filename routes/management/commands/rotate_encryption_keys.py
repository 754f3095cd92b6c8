"""`manage.py rotate_encryption_keys`: re-encrypt every stored credential with the first key.

Rotation: put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), run this,
then drop the old keys.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from routes import crypto
from routes.models import ProviderCredential


class Command(BaseCommand):
    help = "Re-encrypt every provider credential with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        table = ProviderCredential._meta.db_table
        column = ProviderCredential._meta.get_field("secrets").column
        assert column is not None
        pk_column = ProviderCredential._meta.pk.column
        assert pk_column is not None
        qn = connection.ops.quote_name
        try:
            crypto.fernet()  # a missing or malformed key fails here, even with no rows to rotate
        except ImproperlyConfigured as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        rotated = 0
        try:
            with transaction.atomic():
                # Raw tokens: rotate ciphertext to ciphertext, plaintext never leaves the crypto layer.
                rows = ProviderCredential.objects.select_for_update().values_list("pk", flat=True)
                with connection.cursor() as cursor:
                    for pk in rows:
                        cursor.execute(f"SELECT {qn(column)} FROM {qn(table)} WHERE {qn(pk_column)} = %s", [pk])
                        row = cursor.fetchone()
                        token = row[0] if row else None
                        if token is None:
                            continue
                        cursor.execute(
                            f"UPDATE {qn(table)} SET {qn(column)} = %s WHERE {qn(pk_column)} = %s",
                            [crypto.rotate(token), pk],
                        )
                        rotated += 1
        except crypto.CredentialDecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        self.stdout.write(f"Re-encrypted {rotated} credential(s) with the first key.")
