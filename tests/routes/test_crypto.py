"""Credentials at rest: the database holds only Fernet tokens; a wrong key fails loudly; keys rotate."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core import serializers
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from routes import crypto
from routes.crypto import CredentialDecryptionError
from routes.models import ProviderCredential, Route

pytestmark = pytest.mark.django_db

SECRET = "sk-live-4f1c9a7e2b8d6035a1e4c7f9b2d8e6a0"
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
UNRELATED_KEY = Fernet.generate_key().decode()


def raw_token(credential: ProviderCredential) -> str:
    """The secrets column exactly as the database stores it, read past the ORM field."""
    meta = ProviderCredential._meta
    qn = connection.ops.quote_name
    column, pk_column = meta.get_field("secrets").column, meta.pk.column  # type: ignore[union-attr]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {qn(column)} FROM {qn(meta.db_table)} WHERE {qn(pk_column)} = %s", [credential.pk])
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def all_raw_tokens() -> dict[int, str]:
    return {c.pk: raw_token(c) for c in ProviderCredential.objects.only("pk")}


@pytest.fixture
def make_openai_route(make_route: Callable[..., Route]) -> Callable[..., Route]:
    def make(name: str = "gpt", secret: str = SECRET) -> Route:
        return make_route(name=name, provider="openai", config={"openai_api_key": secret})

    return make


def test_database_holds_a_fernet_token_not_the_secret(make_openai_route: Callable[..., Route], settings: Any) -> None:
    credential = ProviderCredential.objects.get(route=make_openai_route())
    token = raw_token(credential)
    assert SECRET not in token
    assert "openai_api_key" not in token  # not even the field names
    assert token.startswith("gAAAAA")  # Fernet's version byte, base64url
    plaintext = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].encode()).decrypt(token.encode())
    assert json.loads(plaintext) == {"openai_api_key": SECRET}


def test_same_secret_encrypts_differently_each_time(make_openai_route: Callable[..., Route]) -> None:
    make_openai_route(name="a")
    make_openai_route(name="b")
    tokens = list(all_raw_tokens().values())
    assert len(set(tokens)) == 2


def test_the_orm_gives_back_the_secret_with_the_right_key(make_openai_route: Callable[..., Route]) -> None:
    route = make_openai_route()
    assert ProviderCredential.objects.get(route=route).secrets == {"openai_api_key": SECRET}


def test_wrong_key_raises_instead_of_returning_ciphertext(
    make_openai_route: Callable[..., Route], settings: Any
) -> None:
    route = make_openai_route()
    token = raw_token(ProviderCredential.objects.get(route=route))
    settings.FIELD_ENCRYPTION_KEYS = [UNRELATED_KEY]
    with pytest.raises(CredentialDecryptionError) as caught:
        ProviderCredential.objects.get(route=route)
    assert token not in str(caught.value)
    assert "rotate_encryption_keys" in str(caught.value)
    with pytest.raises(CredentialDecryptionError):
        crypto.decrypt(token)


def test_an_old_key_still_decrypts_while_listed_after_the_new_one(
    make_openai_route: Callable[..., Route], settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    route = make_openai_route()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert ProviderCredential.objects.get(route=route).secrets == {"openai_api_key": SECRET}


@pytest.mark.parametrize("keys", [[], ["not-a-fernet-key"]])
def test_missing_or_malformed_keys_are_a_configuration_error(keys: list[str], settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = keys
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        crypto.encrypt("x")


def test_serializers_and_dumpdata_never_see_the_secret(make_openai_route: Callable[..., Route]) -> None:
    make_openai_route()
    dumped = serializers.serialize("json", ProviderCredential.objects.all())
    assert SECRET not in dumped
    assert json.loads(dumped)[0]["fields"]["secrets"] == "***"
    out = io.StringIO()
    call_command("dumpdata", "routes.providercredential", stdout=out)
    assert SECRET not in out.getvalue()


def test_secrets_cannot_be_queried_by_value(make_openai_route: Callable[..., Route]) -> None:
    make_openai_route()
    with pytest.raises(FieldError):
        list(ProviderCredential.objects.filter(secrets={"openai_api_key": SECRET}))
    assert ProviderCredential.objects.filter(secrets__isnull=False).count() == 1


def test_credential_repr_and_str_show_no_secret(make_openai_route: Callable[..., Route]) -> None:
    credential = ProviderCredential.objects.get(route=make_openai_route())
    assert SECRET not in repr(credential) and SECRET not in str(credential)


# ---------------------------------------------------------------- rotate_encryption_keys


def rotate() -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    return out.getvalue()


def test_rotation_re_encrypts_every_row_so_the_new_key_alone_decrypts(
    make_openai_route: Callable[..., Route], settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    secrets = {make_openai_route(name=f"r{i}", secret=f"{SECRET}-{i}").pk: f"{SECRET}-{i}" for i in range(3)}
    before = all_raw_tokens()

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert "Re-encrypted 3 credential(s)" in rotate()
    after = all_raw_tokens()
    assert after.keys() == before.keys()
    for pk, token in after.items():
        assert token != before[pk]
        assert SECRET not in token
        with pytest.raises(InvalidToken):
            Fernet(OLD_KEY.encode()).decrypt(token.encode())

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    by_route = {c.route_id: c.secrets for c in ProviderCredential.objects.all()}
    assert by_route == {pk: {"openai_api_key": secret} for pk, secret in secrets.items()}


def test_rotation_with_no_rows_succeeds(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert "Re-encrypted 0 credential(s)" in rotate()


def test_rotation_without_a_key_that_decrypts_fails_and_changes_nothing(
    make_openai_route: Callable[..., Route], settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    make_openai_route(name="a")
    make_openai_route(name="b")
    before = all_raw_tokens()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, UNRELATED_KEY]
    with pytest.raises(CommandError, match="Nothing was changed"):
        rotate()
    assert all_raw_tokens() == before


def test_rotation_is_all_or_nothing_when_one_row_cannot_be_decrypted(
    make_openai_route: Callable[..., Route], settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    make_openai_route(name="a")
    settings.FIELD_ENCRYPTION_KEYS = [UNRELATED_KEY]
    make_openai_route(name="b")
    before = all_raw_tokens()
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    with pytest.raises(CommandError):
        rotate()
    assert all_raw_tokens() == before


@pytest.mark.parametrize("keys", [[], ["not-a-fernet-key"]], ids=["no-keys", "malformed-key"])
def test_rotation_with_unusable_key_setting_is_a_command_error_and_changes_nothing(
    make_openai_route: Callable[..., Route], settings: Any, keys: list[str]
) -> None:
    make_openai_route()
    before = all_raw_tokens()
    settings.FIELD_ENCRYPTION_KEYS = keys
    with pytest.raises(CommandError, match="FIELD_ENCRYPTION_KEYS"):
        rotate()
    assert all_raw_tokens() == before
