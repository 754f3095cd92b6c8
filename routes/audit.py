"""The audit log: every create, change and delete of routes, credentials, teams, consumers, keys,
grants and limits becomes an AuditEntry — who (the admin user, gateway key or command), when, what.

Model signals catch every path (admin forms, the API, services, commands) without each having to
remember. The actor comes from a context variable: the middleware sets it to the signed-in admin
user, the API's key authentication to the key, a command to itself; "system" otherwise. A
credential's secrets are compared field by field and only the names of changed fields are kept.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import decimal
from collections.abc import Callable, Iterator
from typing import Any

from django.db import models
from django.db.models.signals import post_delete, post_save, pre_save
from django.http import HttpRequest, HttpResponse

from .models import ApiKey, AuditEntry, Consumer, ProviderCredential, Route, RouteGrant, Team

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("audit_actor", default="system")

# Fields never written to the log: hashes, and timestamps that move on every save.
_SKIP = frozenset({"hashed_key", "updated_at", "created_at", "last_used_at"})
_SECRET_FIELDS = frozenset({"secrets"})

_REGISTERED: dict[type[models.Model], str] = {}


def current_actor() -> str:
    return _actor.get()


def set_actor(actor: str) -> contextvars.Token[str]:
    return _actor.set(actor[:255])


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Attribute the changes made inside the block to `actor` (commands, tests, tasks)."""
    token = set_actor(actor)
    try:
        yield
    finally:
        _actor.reset(token)


class AuditActorMiddleware:
    """Sets the actor to the signed-in Django user for the request (the admin)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        # Always set (and reset) so an actor set later in the request (the API's key) ends with it.
        signed_in = user is not None and user.is_authenticated
        token = set_actor(f"user:{user.get_username()}" if user is not None and signed_in else "system")
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, models.Model):
        return str(value)
    return value


def _values(instance: models.Model) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in instance._meta.concrete_fields:
        if f.name in _SKIP or f.primary_key:
            continue
        out[f.attname] = f.value_from_object(instance)
    return out


def _secret_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, list[str]]:
    old, new = old or {}, new or {}
    changes = {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
    }
    return {k: v for k, v in changes.items() if v}


def _diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in sorted(set(old or {}) | set(new or {})):
        before, after = (old or {}).get(name), (new or {}).get(name)
        if name in _SECRET_FIELDS:
            secret = _secret_changes(before, after)
            if secret:
                changes[name] = {"fields": secret}  # names only, never a value
        elif before != after:
            changes[name] = [_plain(before), _plain(after)]
    return changes


def _pre_save(sender: type[models.Model], instance: models.Model, raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None:
        instance._audit_before = None  # type: ignore[attr-defined]
        return
    previous = sender._default_manager.filter(pk=instance.pk).first()
    instance._audit_before = _values(previous) if previous is not None else None  # type: ignore[attr-defined]


def _post_save(sender: type[models.Model], instance: models.Model, created: bool, raw: bool = False,
               **kwargs: Any) -> None:
    if raw:
        return
    before = getattr(instance, "_audit_before", None)
    changes = _diff(None if created else before, _values(instance))
    if not created and not changes:
        return
    _write(sender, instance, AuditEntry.Action.CREATE if created else AuditEntry.Action.UPDATE, changes)


def _post_delete(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    _write(sender, instance, AuditEntry.Action.DELETE, {})


def _write(sender: type[models.Model], instance: models.Model, action: str, changes: dict[str, Any]) -> None:
    try:
        label = str(instance)
    except Exception:  # a half-deleted related object
        label = f"#{instance.pk}"
    AuditEntry.objects.create(
        actor=current_actor(), action=action, object_type=_REGISTERED[sender], object_id=str(instance.pk),
        object_repr=label[:255], changes=changes,
    )


def audit_register(model: type[models.Model], object_type: str) -> None:
    """Log every create, change and delete of `model` under `object_type`."""
    _REGISTERED[model] = object_type
    uid = f"audit-{model._meta.label}"
    pre_save.connect(_pre_save, sender=model, dispatch_uid=f"{uid}-pre")
    post_save.connect(_post_save, sender=model, dispatch_uid=f"{uid}-post")
    post_delete.connect(_post_delete, sender=model, dispatch_uid=f"{uid}-delete")


for _model, _type in ((Route, "route"), (ProviderCredential, "credential"), (RouteGrant, "grant"),
                      (ApiKey, "api key"), (Consumer, "consumer"), (Team, "team")):
    audit_register(_model, _type)
