"""A bar chart as SVG drawn on the server: no chart library, no script, readable without colour."""

from __future__ import annotations

from datetime import date
from html import escape

from markupsafe import Markup

from outreach.delivery.stats import Tally

WIDTH, HEIGHT, BAR_GAP = 600, 120, 2


def daily_bars(title: str, per_day: dict[date, Tally]) -> Markup:
    """Sent per day (outline) with the delivered share filled and failures marked below the axis."""
    days = sorted(per_day)
    peak = max((per_day[d].sent for d in days), default=0) or 1
    bar = WIDTH / max(len(days), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 20}" role="img" aria-label="{escape(title)}">'
    ]
    for n, day in enumerate(days):
        tally = per_day[day]
        x = n * bar
        sent_h = HEIGHT * tally.sent / peak
        delivered_h = HEIGHT * tally.delivered / peak
        label = f"{day:%-d %B}: {tally.sent} sent, {tally.delivered} delivered, {tally.failed} failed"
        parts.append(f"<g><title>{escape(label)}</title>")
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - sent_h:.1f}" width="{bar - BAR_GAP:.1f}" height="{sent_h:.1f}" '
            'fill="#ffffff" stroke="#1d4f91"/>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - delivered_h:.1f}" width="{bar - BAR_GAP:.1f}" '
            f'height="{delivered_h:.1f}" fill="#1d4f91"/>'
        )
        if tally.failed:
            parts.append(
                f'<rect x="{x:.1f}" y="{HEIGHT + 4}" width="{bar - BAR_GAP:.1f}" height="8" fill="#b10e1e"/>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every value above is a number or escaped)
