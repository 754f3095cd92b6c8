"""The in-process snapshot of routes, credentials, grants and usable keys.

Loaded once at start-up and reloaded whenever the config version moves (polled every
SNAPSHOT_POLL_SECONDS from Redis, or from the database without Redis), so a warm request does no
ORM query and a change or revocation reaches every process within two poll intervals.
Key expiry is checked per request, so an expired key fails at once even between reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import redis.asyncio as aioredis

from providers.base import Provider, RouteType, Secrets, Target
from providers.registry import get_provider
from usage.services import LimitsTable, limits_table_load

from .. import selectors
from ..environments import for_environment
from ..invalidation import REDIS_VERSION_KEY, config_version_from_db
from ..models import Route, RouteFallback, RouteSplit
from ..principal import Principal, may_query
from .orm import run_orm

logger = logging.getLogger(__name__)

MISS_CHECK_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class RouteEntry:
    id: int
    name: str
    route_type: RouteType
    provider_name: str
    provider: Provider
    model: str
    enabled: bool
    max_candidates: int
    targets: dict[str, Target]  # by environment
    no_credential_target: Target
    granted_team_ids: frozenset[int] = frozenset()
    granted_consumer_ids: frozenset[int] = frozenset()
    # Resilience: per-route timeouts (None: the defaults), retries, weighted split and fallbacks.
    connect_timeout: float | None = None
    read_timeout: float | None = None
    total_timeout: float | None = None
    max_retries: int = 2
    split_weight: int = 100
    splits: tuple[tuple[str, int], ...] = ()  # (route name, weight)
    fallbacks: tuple[str, ...] = ()  # route names, in order
    production_only: bool = False
    default_max_tokens: int | None = None

    def target_for(self, environment: str) -> Target:
        return for_environment(self.targets, environment) or self.no_credential_target

    def allows(self, principal: Principal) -> bool:
        return may_query(
            principal, granted_team_ids=self.granted_team_ids, granted_consumer_ids=self.granted_consumer_ids,
            production_only=self.production_only,
        )

    def granted(self, principal: Principal) -> bool:
        """Granted, whatever the environment (to tell "not granted" from "production only")."""
        return may_query(
            principal, granted_team_ids=self.granted_team_ids, granted_consumer_ids=self.granted_consumer_ids
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    routes: dict[str, RouteEntry] = field(default_factory=dict)
    keys: dict[str, Principal] = field(default_factory=dict)  # by key hash
    limits: LimitsTable = field(default_factory=LimitsTable)

    def principal(self, key_hash: str, now: datetime) -> Principal | None:
        principal = self.keys.get(key_hash)
        if principal is None or (principal.expires_at is not None and principal.expires_at <= now):
            return None
        return principal


def snapshot_load(version: int) -> Snapshot:
    """Build a snapshot from the database (sync; run it in the ORM thread)."""
    team_grants: dict[int, set[int]] = defaultdict(set)
    consumer_grants: dict[int, set[int]] = defaultdict(set)
    for route_id, team_id, consumer_id in selectors.route_grants().values_list("route_id", "team_id", "consumer_id"):
        if team_id is not None:
            team_grants[route_id].add(team_id)
        if consumer_id is not None:
            consumer_grants[route_id].add(consumer_id)

    fallbacks: dict[int, list[str]] = defaultdict(list)
    fallback_rows = RouteFallback.objects.order_by("position", "id").values_list("route_id", "fallback__name")
    for route_id, name in fallback_rows:
        fallbacks[route_id].append(name)
    splits: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for route_id, name, weight in RouteSplit.objects.order_by("id").values_list("route_id", "target__name", "weight"):
        splits[route_id].append((name, weight))

    secrets_by_route: dict[int, dict[str, Secrets]] = defaultdict(dict)
    for cred in selectors.route_credentials():
        secrets_by_route[cred.route_id][cred.environment] = Secrets(cred.secrets or {})

    routes: dict[str, RouteEntry] = {}
    for route in Route.objects.all():
        try:
            provider = get_provider(route.provider)
        except Exception:
            logger.error("route %s names an unknown provider %r; it is not served", route.name, route.provider)
            continue
        targets = {
            env: Target(provider=route.provider, model=route.model_name, config=dict(route.config), secrets=secrets)
            for env, secrets in secrets_by_route[route.pk].items()
        }
        routes[route.name] = RouteEntry(
            id=route.pk,
            name=route.name,
            route_type=RouteType(route.route_type),
            provider_name=route.provider,
            provider=provider,
            model=route.model_name,
            enabled=route.enabled,
            max_candidates=route.max_candidates,
            targets=targets,
            no_credential_target=Target(provider=route.provider, model=route.model_name, config=dict(route.config)),
            granted_team_ids=frozenset(team_grants[route.pk]),
            granted_consumer_ids=frozenset(consumer_grants[route.pk]),
            production_only=route.production_only,
            default_max_tokens=route.default_max_tokens,
            connect_timeout=route.connect_timeout_seconds,
            read_timeout=route.read_timeout_seconds,
            total_timeout=route.total_timeout_seconds,
            max_retries=route.max_retries,
            split_weight=route.split_weight,
            splits=tuple(splits[route.pk]),
            fallbacks=tuple(fallbacks[route.pk]),
        )

    keys = {k.hashed_key: selectors.principal_from_api_key(k) for k in selectors.usable_api_keys()}
    return Snapshot(version=version, routes=routes, keys=keys, limits=limits_table_load())


def _load_current() -> Snapshot:
    return snapshot_load(config_version_from_db())


class SnapshotHolder:
    """Holds the current snapshot and keeps it fresh from a background task."""

    def __init__(self, *, redis_url: str = "", poll_seconds: float = 1.0) -> None:
        self.current = Snapshot(version=-1)
        self._poll_seconds = poll_seconds
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None
        self._redis_version: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_miss_check = 0.0

    async def refresh_on_miss(self) -> bool:
        """A key or route missing from the snapshot may have been created a moment ago (the seed's
        create-then-query): check the version now and reload if it moved. At most once per
        MISS_CHECK_SECONDS per process, so a flood of unknown keys cannot flood the store.
        True if the snapshot was reloaded."""
        now = time.monotonic()
        if now - self._last_miss_check < MISS_CHECK_SECONDS:
            return False
        self._last_miss_check = now
        try:
            if await self._changed():
                await self.reload()
                return True
        except Exception:
            logger.exception("checking the config version on a snapshot miss failed")
        return False

    async def reload(self) -> None:
        self.current = await run_orm(_load_current)

    async def _changed(self) -> bool:
        if self._redis is not None:
            try:
                raw = await self._redis.get(REDIS_VERSION_KEY)
                version = int(raw or 0)
                changed = version != self._redis_version
                self._redis_version = version
                return changed
            except aioredis.RedisError:
                logger.warning("Redis unreachable for the config version; checking the database")
        return await run_orm(config_version_from_db) != self.current.version

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                if await self._changed():
                    await self.reload()
            except Exception:
                logger.exception("refreshing the route/key snapshot failed; serving the previous one")

    async def start(self) -> None:
        if self._redis is not None:
            try:
                self._redis_version = int(await self._redis.get(REDIS_VERSION_KEY) or 0)
            except aioredis.RedisError:
                logger.warning("Redis unreachable at start-up; polling the database for changes")
        await self.reload()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="snapshot-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()
