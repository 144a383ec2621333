"""The dashboard: urgent items first, replies waiting, today's visits, the last 30 days."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from outreach.appointments.dayview import day_view
from outreach.db import transaction
from outreach.delivery import stats
from outreach.replies import inbox
from outreach.timefmt import long_date
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff.charts import daily_bars
from outreach.web.staff.inbox_pages import item_row
from outreach.web.staff.rendering import render
from outreach.web.staff.schedule_pages import visit_row
from outreach.web.staff.security import Staff, now_of

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, staff: Staff) -> HTMLResponse:
    settings = get_settings(request)
    zone = settings.clinic_zone
    now = now_of(request)
    today = now.astimezone(zone).date()
    with transaction(get_session_factory(request)) as session:
        urgent = inbox.list_items(session, urgent_only=True, limit=50)
        waiting = [i for i in inbox.list_items(session, limit=50) if not i.urgent]
        visits = day_view(session, today, zone)
        recent = stats.recent(session, now, zone)
    charts = [
        (
            channel.upper() if channel == "sms" else channel.capitalize(),
            daily_bars(f"{channel} messages per day, last 30 days", per_day),
            sum(t.sent for t in per_day.values()),
            sum(t.delivered for t in per_day.values()),
            sum(t.failed for t in per_day.values()),
        )
        for channel, per_day in sorted(recent.by_channel_day.items())
    ]
    context = {
        "title": "Dashboard",
        # A crisis text then pages nobody: said where staff look first, not only in a log line.
        "nobody_on_call": not (settings.oncall_sms or settings.oncall_email),
        "urgent": [item_row(i, request) for i in urgent],
        "waiting": [item_row(i, request) for i in waiting[:10]],
        "waiting_count": len(waiting),
        "today": long_date(today),
        "visits": [visit_row(v, zone) for v in visits],
        "charts": charts,
        "campaigns": sorted(recent.by_campaign.items()),
    }
    return render(request, "dashboard.html", context, staff=staff)
