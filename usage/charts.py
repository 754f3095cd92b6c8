"""Charts rendered on the server as inline SVG: no JavaScript, no CDN, nothing to download.

Each function returns SVG markup (labels escaped) for a template to include with `|safe`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from django.utils.html import escape

Number = int | float | Decimal
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563")


def usd(value: Number) -> str:
    """Dollars for people: cents above $1, more digits below (tiny costs are the norm per call)."""
    v = Decimal(str(value))
    if v == 0:
        return "$0"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    if abs(v) >= Decimal("0.01"):
        return f"${v:.4f}"
    return f"${v:.6f}"


def count(value: Number) -> str:
    v = float(value)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.1f}{unit}"
    return f"{int(v)}"


def _nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k at or above `value` (a round top for the y axis)."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude


def bar_chart(points: Sequence[tuple[str, Number]], *, title: str, fmt: Callable[[Number], str] = count,
              color: str = PALETTE[0], width: int = 1060, height: int = 240, chart_id: str = "") -> str:
    """Vertical bars, one per point (e.g. one per day), with a y axis and every few x labels."""
    left, right, top, bottom = 64, 12, 28, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(v) for _, v in points]
    ymax = _nice_max(max(values, default=0.0))
    n = max(len(points), 1)
    slot = plot_w / n
    bar_w = max(1.0, slot * 0.72)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(chart_id)}" '
        f'data-points="{len(points)}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{left}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
                     f'{escape(fmt(ymax * i / 4))}</text>')
    label_every = max(1, n // 10)
    for i, (label, value) in enumerate(points):
        h = plot_h * float(value) / ymax if ymax else 0.0
        x = left + i * slot + (slot - bar_w) / 2
        parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                     f'fill="{color}" class="bar"><title>{escape(label)}: {escape(fmt(value))}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" class="axis" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(items: Sequence[tuple[str, Number]], *, title: str, fmt: Callable[[Number], str] = usd,
               width: int = 460, row_height: int = 24, chart_id: str = "", limit: int = 8) -> str:
    """Horizontal bars, largest first (a breakdown by route, model, consumer...)."""
    items = sorted(items, key=lambda kv: float(kv[1]), reverse=True)[:limit]
    label_w, value_w, top = 150, 86, 28
    plot_w = width - label_w - value_w
    height = top + row_height * max(len(items), 1) + 8
    vmax = max((float(v) for _, v in items), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{escape(chart_id)}" '
        f'data-points="{len(items)}" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    if not items:
        parts.append(f'<text x="0" y="{top + 16}" class="axis">No calls in this period.</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row_height
        w = plot_w * float(value) / vmax
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<text x="0" y="{y + 16}" class="axis"><title>{escape(label)}</title>{escape(short)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{max(w, 1):.1f}" height="{row_height - 8}" '
                     f'fill="{PALETTE[i % len(PALETTE)]}" class="bar"/>')
        parts.append(f'<text x="{label_w + max(w, 1) + 6:.1f}" y="{y + 16}" class="axis">{escape(fmt(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def budget_bar(*, spent: Decimal, projected: Decimal, budget: Decimal | None, width: int = 1060) -> str:
    """Spend so far and the month-end projection against the budget (or alone when there is none)."""
    height = 68
    scale_max = float(max(budget or 0, projected, spent) or 1) * 1.05

    def x(value: Decimal) -> float:
        return (width - 4) * float(value) / scale_max

    over = budget is not None and projected > budget
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="budget" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="Budget">',
        f'<rect x="0" y="18" width="{width - 4}" height="22" class="track"/>',
        f'<rect x="0" y="18" width="{x(projected):.1f}" height="22" fill="{"#fca5a5" if over else "#bfdbfe"}"/>',
        f'<rect x="0" y="18" width="{x(spent):.1f}" height="22" fill="{"#dc2626" if over else "#2563eb"}"/>',
    ]
    if budget is not None:
        anchor = "end" if x(budget) > width / 2 else "start"
        parts.append(f'<line x1="{x(budget):.1f}" y1="12" x2="{x(budget):.1f}" y2="46" class="budget-line"/>')
        parts.append(f'<text x="{x(budget):.1f}" y="9" class="axis" text-anchor="{anchor}">budget '
                     f'{escape(usd(budget))}</text>')
    parts.append(f'<text x="0" y="60" class="axis">spent {escape(usd(spent))} · projected at month end '
                 f'{escape(usd(projected))}</text>')
    parts.append("</svg>")
    return "".join(parts)
