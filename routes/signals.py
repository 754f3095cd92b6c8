"""Every change the serving snapshot depends on moves the config version once its transaction commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from . import models
from .invalidation import config_version_bump

_WATCHED = (
    models.Route,
    models.RouteFallback,
    models.RouteSplit,
    models.ProviderCredential,
    models.RouteGrant,
    models.ApiKey,
    models.Consumer,
    models.Team,
)


def _on_change(sender: Any, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return  # loaddata: bumped once by the caller
    transaction.on_commit(config_version_bump)


def snapshot_watch(model: Any) -> None:
    """Reload every serving snapshot when a row of `model` is saved or deleted (other apps' models too)."""
    post_save.connect(_on_change, sender=model, dispatch_uid=f"snapshot-{model._meta.label}-save")
    post_delete.connect(_on_change, sender=model, dispatch_uid=f"snapshot-{model._meta.label}-delete")


for _model in _WATCHED:
    snapshot_watch(_model)
