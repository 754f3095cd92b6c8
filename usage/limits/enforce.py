"""Reserve before the upstream call, reconcile after: the limiter the serving half holds.

The bound: a call is let through only if, for every counter it touches, committed usage + what calls
in flight reserved + this call's reservation stays within the cap, checked and charged in one atomic
step. Reconciling replaces the reservation with the usage the vendor reports. As long as a call uses
no more than it reserved (the output is capped upstream at the reserved `max_tokens`; the input
bound is exact for the mock and a byte bound for vendors, see `estimate`), no counter ever passes
its cap. Where a vendor reports more than was reserved, the counter passes its cap by at most the
sum of those excesses over the calls in flight at that moment: the overshoot bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from providers.base import GatewayError, StdRequest, Usage

from .estimate import apply_output_cap, input_tokens_bound, output_tokens_bound
from .rules import (
    NO_CAP,
    Caller,
    Check,
    LimitsTable,
    Priced,
    cost_micros,
    micros_to_usd,
    seconds_until,
)
from .stores import LimitStore, LimitStoreUnavailable, Triple

logger = logging.getLogger(__name__)


class LimitExceeded(GatewayError):
    status = 429
    code = "REQUEST_LIMIT_EXCEEDED"

    def __init__(self, message: str, *, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message, retry_after=retry_after)
        self.headers = headers


class LimiterUnavailable(GatewayError):
    status = 503
    code = "TEMPORARILY_UNAVAILABLE"


class ModelNotPriced(GatewayError):
    status = 503
    code = "MODEL_NOT_PRICED"


@dataclass(slots=True)
class Reservation:
    """What one call charged; reconcile it exactly once."""

    keys: list[str]
    tokens: int
    usd_micros: int
    price: Priced | None
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


@dataclass(frozen=True, slots=True)
class _Plan:
    checks: list[Check]
    keys: list[str]
    expire_at: list[int]
    caps: list[Triple]
    meters_usage: bool
    meters_money: bool


def _fmt(metric: str, amount: int) -> str:
    if metric == "usd":
        return f"USD {micros_to_usd(amount).normalize():f}"
    return f"{amount} {metric}"


def _header_value(metric: str, amount: int) -> str:
    return f"{micros_to_usd(amount).normalize():f}" if metric == "usd" else str(amount)


def rate_headers(checks: list[Check], values: list[Triple], now: float) -> dict[str, str]:
    """`X-RateLimit-*` for the tightest counter: of calls if any is capped, else tokens, else USD."""
    for m, metric in enumerate(("calls", "tokens", "usd")):
        capped = [(c.caps()[m] - v[m], c, v) for c, v in zip(checks, values, strict=True) if c.caps()[m] != NO_CAP]
        if not capped:
            continue
        remaining, check, _ = min(capped, key=lambda x: x[0])
        return {
            "X-RateLimit-Limit": _header_value(metric, check.caps()[m]),
            "X-RateLimit-Remaining": _header_value(metric, max(0, remaining)),
            "X-RateLimit-Reset": str(seconds_until(check.window_end, now)),
            "X-RateLimit-Scope": f"{metric} per {check.period}, {check.description}",
        }
    return {}


class Limiter:
    """Checks and charges every limit that applies to a call in one store operation."""

    def __init__(self, store: LimitStore, *, key_prefix: str, price_of: Callable[[str, str], Priced | None],
                 fail_open: bool = False, default_max_tokens: int = 4096, expiry_slack_seconds: int = 600) -> None:
        self.store = store
        self.price_of = price_of
        self.key_prefix = key_prefix
        self.fail_open = fail_open
        self.default_max_tokens = default_max_tokens
        self.expiry_slack_seconds = expiry_slack_seconds
        self._last_open_log = 0.0
        self._open_suppressed = 0
        self._plans: dict[tuple[int, int, int, str, str], _Plan] = {}
        self._plans_table: LimitsTable | None = None
        self._plans_minute = -1

    async def reserve(self, table: LimitsTable, caller: Caller, request: StdRequest, *,
                      route_max_tokens: int | None) -> Reservation | None:
        """Charge the call to every applicable counter, or raise LimitExceeded (429) without charging.

        Sets `max_tokens` on a request that has none to the route's default cap (or, when a token or
        money limit applies, to GATEWAY_DEFAULT_MAX_TOKENS): that cap goes upstream and bounds what
        is reserved. None when no limit applies (or the store is down and the limiter fails open).
        """
        now = time.time()
        plan = self._plan(table, caller, now)
        checks = plan.checks
        apply_output_cap(request, route_max_tokens or (self.default_max_tokens if plan.meters_usage else None))
        if not checks:
            return None
        price = self.price_of(caller.provider, caller.model)
        if price is None and plan.meters_money:
            raise ModelNotPriced(
                f"Route '{caller.route_name}' has a money budget, but model '{caller.model}' of provider "
                f"'{caller.provider}' has no price: an admin must add one before it can be called."
            )
        input_tokens = input_tokens_bound(request, caller.provider)
        output_tokens = output_tokens_bound(request)
        tokens = input_tokens + output_tokens
        usd = cost_micros(price, input_tokens, output_tokens) if price else 0
        keys = plan.keys
        try:
            result = await self.store.reserve(keys, plan.expire_at, plan.caps, (1, tokens, usd))
        except LimitStoreUnavailable as exc:
            if not self.fail_open:
                raise LimiterUnavailable(
                    "The limits store is unreachable, so no call can be checked against its limits; "
                    "try again shortly."
                ) from exc
            self._log_failing_open(exc)
            return None
        if not result.ok:
            raise self._refusal(checks[result.refused_index], result.refused_metric, result.values[0],
                                {"calls": 1, "tokens": tokens, "usd": usd}, now)
        return Reservation(keys=keys, tokens=tokens, usd_micros=usd, price=price,
                           headers=rate_headers(checks, result.values, now))

    def _plan(self, table: LimitsTable, caller: Caller, now: float) -> _Plan:
        """The counters of this caller on this route now, cached for the minute (windows move at most
        once a minute) and for the table (a new snapshot brings a new table)."""
        minute = int(now // 60)
        if table is not self._plans_table or minute != self._plans_minute:
            self._plans, self._plans_table, self._plans_minute = {}, table, minute
        ident = (caller.route_id, caller.consumer_id, caller.team_id, caller.provider, caller.model)
        plan = self._plans.get(ident)
        if plan is None:
            checks = table.checks_for(caller, now)
            plan = self._plans[ident] = _Plan(
                checks=checks,
                keys=[c.key(self.key_prefix) for c in checks],
                expire_at=[c.window_end + self.expiry_slack_seconds for c in checks],
                caps=[c.caps() for c in checks],
                meters_usage=any(c.tokens != NO_CAP or c.usd_micros != NO_CAP for c in checks),
                meters_money=any(c.usd_micros != NO_CAP for c in checks),
            )
        return plan

    def _refusal(self, check: Check, metric: str, values: Triple, wanted: dict[str, int],
                 now: float) -> LimitExceeded:
        m = ("calls", "tokens", "usd").index(metric)
        cap, used = check.caps()[m], values[m]
        wait = seconds_until(check.window_end, now)
        reset_at = datetime.fromtimestamp(check.window_end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        needs = "" if metric == "calls" else f"; this call needs up to {_fmt(metric, wanted[metric])}"
        message = (
            f"Limit exceeded: {_fmt(metric, cap)} per {check.period} for {check.description} "
            f"(scope: {', '.join(check.scopes)}); {_fmt(metric, used)} used or reserved{needs}. "
            f"It resets in {wait} s, at {reset_at}."
        )
        headers = {
            "X-RateLimit-Limit": _header_value(metric, cap),
            "X-RateLimit-Remaining": _header_value(metric, max(0, cap - used)),
            "X-RateLimit-Reset": str(wait),
            "X-RateLimit-Scope": f"{metric} per {check.period}, {check.description}",
        }
        return LimitExceeded(message, retry_after=wait, headers=headers)

    def _log_failing_open(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_open_log < 5.0:
            self._open_suppressed += 1
            return
        logger.error(
            "LIMITS NOT ENFORCED: the limits store is unreachable (%s) and GATEWAY_LIMITS_FAIL_MODE=open, so "
            "calls go through unlimited (%d more since the last message)", exc, self._open_suppressed,
        )
        self._last_open_log, self._open_suppressed = now, 0

    async def settle(self, reservation: Reservation | None, usage: Usage | None) -> None:
        """Replace the reservation with real usage: `usage` after a call, a zero Usage to release it
        (the call failed), None to keep it whole (usage unknown, e.g. a client abort mid-call)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        if usage is None or usage.input_tokens is None:
            return
        input_tokens, output_tokens = usage.input_tokens or 0, usage.output_tokens or 0
        tokens = usage.total_tokens if usage.total_tokens is not None else input_tokens + output_tokens
        usd = cost_micros(reservation.price, input_tokens, output_tokens) if reservation.price else 0
        try:
            await self.store.adjust(reservation.keys, (0, tokens - reservation.tokens, usd - reservation.usd_micros))
        except LimitStoreUnavailable as exc:
            # The reservation stays charged: counters over-count until their window ends.
            logger.error("could not reconcile a limits reservation (%s); it stays charged", exc)

    def counters(self, checks: list[Check]) -> list[Triple]:
        """Current counters of `checks` (sync; for the management API)."""
        return self.store.read([c.key(self.key_prefix) for c in checks])

    async def aclose(self) -> None:
        await self.store.aclose()


RELEASE = Usage(input_tokens=0, output_tokens=0, total_tokens=0)
