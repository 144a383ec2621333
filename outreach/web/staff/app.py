"""Mounting the staff web app onto the FastAPI app: routers, static files, sign-in redirects."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from outreach.errors import NotFound
from outreach.web.staff import (
    admin_pages,
    booking_pages,
    contact_files,
    contact_pages,
    dashboard,
    inbox_pages,
    login,
    message_pages,
    schedule_pages,
    user_pages,
)
from outreach.web.staff.rendering import render
from outreach.web.staff.security import SESSION_COOKIE, NotSignedIn, SecurityHeaders, login_redirect

STATIC = Path(__file__).resolve().parent.parent / "static"
ROUTERS = (
    login.router,
    dashboard.router,
    inbox_pages.router,
    # Before contact_pages: /contacts/import and /export are not /contacts/{id}.
    contact_files.router,
    contact_pages.router,
    # Before schedule_pages: /appointments/book is not a day.
    booking_pages.router,
    # Before schedule_pages: /campaigns/sync is not a campaign.
    user_pages.router,
    schedule_pages.router,
    message_pages.router,
    admin_pages.router,
)
ERROR_TITLES = {403: "Not allowed", 404: "Not found"}
# Starlette's own wording when no route matched ("Not Found"), said plainly.
NO_SUCH_PAGE = "There is no page at this address."


def mount(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(NotSignedIn)
    def _sign_in_first(request: Request, exc: NotSignedIn) -> Response:
        # A cookie that no longer opens a session means it ended (idle, sign-out, disabled).
        ended = "&ended=1" if request.cookies.get(SESSION_COOKIE) else ""
        if request.method != "GET":
            return Response("Sign in first.", status_code=401, media_type="text/plain")
        response = RedirectResponse(login_redirect(exc.next_path) + ended, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.exception_handler(NotFound)
    def _not_found(request: Request, exc: NotFound) -> Response:
        return render(request, "error.html", {"title": "Not found", "message": str(exc)}, status_code=404)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # Browsers get a page; webhooks and API clients keep FastAPI's JSON.
        if "text/html" in request.headers.get("accept", "") and exc.status_code in ERROR_TITLES:
            message = str(exc.detail)
            if exc.status_code == 404 and message == "Not Found":
                message = NO_SUCH_PAGE
            context = {"title": ERROR_TITLES[exc.status_code], "message": message}
            return render(request, "error.html", context, status_code=exc.status_code)
        return await http_exception_handler(request, exc)
