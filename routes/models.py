"""Routes and their credentials; teams, consumers, gateway keys and route access grants."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from providers.base import RouteType

from .fields import EncryptedJSONField

NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
    "Use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128).",
)


class Environment(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    PRODUCTION = "production", "Production"


class Team(models.Model):
    name = models.CharField(max_length=128, unique=True, validators=[NAME_VALIDATOR])
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Consumer(models.Model):
    """A person or a service that calls routes, in one team, with an environment."""

    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        SERVICE = "service", "Service"

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="consumers")
    name = models.CharField(max_length=128, validators=[NAME_VALIDATOR])
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PERSON)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.DEVELOPMENT)
    email = models.EmailField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="consumer_unique_in_team")]

    def __str__(self) -> str:
        return f"{self.team.name}/{self.name}"


class ApiKey(models.Model):
    """A gateway key. Only its SHA-256 hash and its public prefix are stored."""

    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=128, blank=True, help_text="What this key is for.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    is_admin = models.BooleanField(
        default=False, help_text="May manage routes through the API and query every route."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"gw-{self.prefix}_…"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Route(models.Model):
    """An LLM endpoint the platform team registered: a provider model behind a standard interface."""

    name = models.CharField(max_length=128, unique=True, validators=[NAME_VALIDATOR])
    route_type = models.CharField(max_length=32, choices=[(t.value, t.value) for t in RouteType])
    provider = models.CharField(max_length=64)
    model_name = models.CharField(max_length=256, help_text="The provider's model (or deployment) name.")
    config = models.JSONField(
        default=dict, blank=True, help_text="Non-secret provider settings, with MLflow's keys (e.g. openai_api_base)."
    )
    enabled = models.BooleanField(default=True)
    max_candidates = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(128)],
        help_text="Most candidates (n / candidate_count) one request may ask for.",
    )
    production_only = models.BooleanField(
        default=False, help_text="Only consumers in the production environment may query this route."
    )
    default_max_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)],
        help_text=(
            "Output-token cap for a request that sets no max_tokens: sent upstream, and what token and money "
            "limits reserve. Blank: GATEWAY_DEFAULT_MAX_TOKENS when a token or money limit applies, else no cap."
        ),
    )
    # Resilience (blank: the GATEWAY_UPSTREAM_* defaults).
    connect_timeout_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)], help_text="Connect timeout (s)."
    )
    read_timeout_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)],
        help_text="Longest wait for the answer, or for each chunk of a stream (s).",
    )
    total_timeout_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.1)],
        help_text="Longest a whole call may take, streams included (s).",
    )
    max_retries = models.PositiveSmallIntegerField(
        default=2, validators=[MaxValueValidator(10)],
        help_text="Retries on connection errors, 429 and 5xx, with exponential backoff and jitter.",
    )
    split_weight = models.PositiveIntegerField(
        default=100, help_text="This route's own share when traffic is split over other targets below."
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RouteFallback(models.Model):
    """A route of the same type tried, in order, when the route fails after its retries."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="fallbacks")
    fallback = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="fallback_for")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["route", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["route", "fallback"], name="one_fallback_entry_per_route")]

    def __str__(self) -> str:
        return f"{self.route.name} → {self.fallback.name} (#{self.position})"

    def clean(self) -> None:
        same_type_other_route(self.route_id, self.fallback_id, "fallback")


class RouteSplit(models.Model):
    """Another route (same type) that takes a weighted share of this route's traffic."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="splits")
    target = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="split_for")
    weight = models.PositiveIntegerField(default=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["route", "target"], name="one_split_entry_per_route")]

    def __str__(self) -> str:
        return f"{self.route.name} → {self.target.name} (weight {self.weight})"

    def clean(self) -> None:
        same_type_other_route(self.route_id, self.target_id, "split target")


def same_type_other_route(route_id: int | None, other_id: int | None, what: str) -> None:
    """A fallback or split target must be another route of the same type."""
    if route_id is None or other_id is None:
        return
    if route_id == other_id:
        raise ValidationError(f"A route cannot be its own {what}.")
    types = dict(Route.objects.filter(pk__in=[route_id, other_id]).values_list("pk", "route_type"))
    if types.get(route_id) != types.get(other_id):
        raise ValidationError(f"The {what} must be a route of the same type ({types.get(route_id)}).")


class ProviderCredential(models.Model):
    """A route's secret provider fields for one environment, encrypted at rest, never shown again."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="credentials")
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PRODUCTION)
    secrets = EncryptedJSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["route", "environment"], name="one_credential_per_route_environment")
        ]

    def __str__(self) -> str:
        return f"{self.route.name} ({self.environment})"

    def __repr__(self) -> str:
        return f"<ProviderCredential {self.pk} route={self.route_id} {self.environment}>"


class RouteGrant(models.Model):
    """Lets a team (all its consumers) or one consumer query a route."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="grants")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, blank=True, related_name="grants")
    consumer = models.ForeignKey(Consumer, on_delete=models.CASCADE, null=True, blank=True, related_name="grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(team__isnull=False, consumer__isnull=True) | Q(team__isnull=True, consumer__isnull=False)),
                name="grant_to_team_or_consumer",
            ),
            models.UniqueConstraint(fields=["route", "team"], name="one_grant_per_route_team"),
            models.UniqueConstraint(fields=["route", "consumer"], name="one_grant_per_route_consumer"),
        ]

    def __str__(self) -> str:
        return f"{self.route.name} → {self.team or self.consumer}"


class ConfigVersion(models.Model):
    """One row whose counter moves on every change the serving snapshot depends on.

    Serving processes poll it (or the Redis key of the same name) to know when to reload.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config version {self.version}"


class AuditEntry(models.Model):
    """Who changed what, when: one row per create, update or delete of an audited object.

    `changes` maps a field to `[old, new]`; for a credential's secret fields it lists only which
    fields were added, changed or removed, never a value. Rows are written by `routes.audit` and
    are read-only in the admin.
    """

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        UPDATE = "update", "Changed"
        DELETE = "delete", "Deleted"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=255, help_text="The admin user, gateway key or command that made the change.")
    action = models.CharField(max_length=16, choices=Action.choices)
    object_type = models.CharField(max_length=64, db_index=True)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=255)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.object_type} {self.object_repr}"
