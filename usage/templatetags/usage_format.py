"""Number formats for the dashboards: `{{ value|usd }}`, `{{ value|tokens }}`."""

from __future__ import annotations

from typing import Any

from django import template

from ..charts import count, usd

register = template.Library()


@register.filter(name="usd")
def usd_filter(value: Any) -> str:
    return usd(value or 0)


@register.filter(name="tokens")
def tokens_filter(value: Any) -> str:
    return count(value or 0)
