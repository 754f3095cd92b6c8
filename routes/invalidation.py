"""The config version: how every serving process learns that routes, keys or grants changed.

The version lives in the ConfigVersion row and, when Redis is configured, in a Redis key too, so
serving processes poll one cheap Redis GET per interval instead of the database. Processes without
Redis (the embedded demo) poll the row, which also sees changes made by other processes such as
`manage.py issue_key`.
"""

from __future__ import annotations

import functools
import logging
import time

import redis
from django.conf import settings
from django.db.models import F

from .models import ConfigVersion

logger = logging.getLogger(__name__)

REDIS_VERSION_KEY = "gateway:config-version"


@functools.cache
def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def config_version_bump() -> None:
    """Move the version on (called on commit of every relevant change)."""
    updated = ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1)
    if not updated:
        # A fresh (or flushed) table starts from the clock, never back at a version already served.
        ConfigVersion.objects.get_or_create(pk=1, defaults={"version": time.time_ns() // 1_000_000})
    if settings.REDIS_URL:
        try:
            _redis_client(settings.REDIS_URL).incr(REDIS_VERSION_KEY)
        except redis.RedisError:
            # Serving processes fall back to the database row when Redis is unreachable.
            logger.warning("could not publish the config version to Redis; processes will see the change late")


def config_version_from_db() -> int:
    row = ConfigVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    return int(row or 0)
