"""The API bench's web process: `outreach serve`'s app on one uvicorn worker, the rate limit
lifted and no broker (the upserts enqueue nothing).

    python -m bench.api_server DATABASE_URL TEMPLATES_DIR PORT
"""

from __future__ import annotations

import sys

import uvicorn

from outreach.config import load_settings
from outreach.web.api.core import TokenBucket
from outreach.web.app import create_app


def main() -> None:
    database_url, templates_dir, port = sys.argv[1:4]
    settings = load_settings(database_url=database_url, templates_dir=templates_dir)
    app = create_app(settings, enqueue_inbound=lambda _i: None)
    app.state.api_bucket = TokenBucket(1e9, 10**9)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
