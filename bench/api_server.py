"""The API bench's web process: `outreach serve`'s app on one uvicorn worker, the rate limit
lifted and no broker (the upserts enqueue nothing).

One route is the bench's own: ``PUT /api/v1/bench-shell/{external_id}`` takes the upsert's body
through everything every API call pays for (body cap and validation, the token look-up, the
transaction, the audit event, the commit, the JSON answer) and books nothing, so the bench can
say what is left of the goal's budget for the booking itself.

    python -m bench.api_server DATABASE_URL TEMPLATES_DIR PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import APIRouter

from outreach.config import load_settings
from outreach.web.api.appointments import AppointmentPut, ExternalId, Staff
from outreach.web.api.core import ApiRoute, TokenBucket
from outreach.web.app import create_app

SHELL_PREFIX = "/api/v1/bench-shell"

shell = APIRouter(prefix=SHELL_PREFIX, route_class=ApiRoute)


@shell.put("/{external_id}", name="bench.shell")
def shell_put(call: Staff, external_id: ExternalId, body: AppointmentPut) -> dict[str, str]:
    call.about("appointment", None, action="none")
    return {"external_id": external_id, "type": body.type}


def main() -> None:
    database_url, templates_dir, port = sys.argv[1:4]
    settings = load_settings(database_url=database_url, templates_dir=templates_dir)
    app = create_app(settings, enqueue_inbound=lambda _i: None)
    app.state.api_bucket = TokenBucket(1e9, 10**9)
    app.include_router(shell)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
