"""Contacts in and out as CSV: import with a preview of rejected rows first, and export.

The preview runs the real import in a transaction that is rolled back, so what it reports is
exactly what committing will do. The uploaded file waits in a private temporary directory
between the two steps, named by a random token the form carries (never the URL).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from outreach import audit
from outreach.contacts.export import export_contacts_csv
from outreach.contacts.importer import ImportReport, import_contacts_csv
from outreach.db import transaction
from outreach.errors import OutreachError
from outreach.web.deps import get_session_factory, get_settings
from outreach.web.staff import forms
from outreach.web.staff.rendering import render
from outreach.web.staff.security import CheckedForm, Staff, StaffUser, now_of

router = APIRouter()

DEFAULT_UPLOADS = Path(tempfile.gettempdir()) / "outreach-uploads"
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
# A previewed file holds patient data: one not imported within this long is deleted.
UPLOAD_LIFETIME = timedelta(hours=1)


def _new_token(now: datetime) -> str:
    # The upload's time leads its name, so its age needs no file-system clock. Changing it
    # only names a file that does not exist.
    return f"{int(now.timestamp())}-{secrets.token_urlsafe(24)}"


def _is_stale(name: str, now: datetime) -> bool:
    created, _, rest = name.partition("-")
    if not created.isdigit() or not rest:
        return True  # not a name this module gave
    return now.timestamp() - int(created) > UPLOAD_LIFETIME.total_seconds()


def uploads_dir(request: Request) -> Path:
    return cast(Path, request.app.state.uploads_dir)


def forget_stale_uploads(directory: Path, now: datetime) -> int:
    """Delete previewed files never imported; run at each new upload. Returns how many."""
    stale = [path for path in directory.glob("*.csv") if _is_stale(path.stem, now)]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _upload_path(directory: Path, token: str, now: datetime) -> Path | None:
    if not token or not token.replace("-", "").replace("_", "").isalnum():
        return None
    path = directory / f"{token}.csv"
    if _is_stale(token, now):
        path.unlink(missing_ok=True)
        return None
    return path if path.is_file() else None


def _page(
    request: Request,
    staff: StaffUser,
    *,
    report: ImportReport | None = None,
    token: str = "",
    committed: bool = False,
    errors: forms.FormErrors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "title": "Import contacts",
        "report": report,
        "token": token,
        "committed": committed,
        "errors": errors or forms.FormErrors(),
    }
    return render(request, "contacts_import.html", context, staff=staff, status_code=status_code)


@router.get("/contacts/import", response_class=HTMLResponse)
def import_form(request: Request, staff: Staff) -> HTMLResponse:
    return _page(request, staff)


def _run_import(session: Session, request: Request, staff: StaffUser, path: Path) -> ImportReport:
    return import_contacts_csv(
        session,
        path,
        clinic_timezone=get_settings(request).clinic_timezone,
        recorded_by=f"CSV import by {staff.email}",
        workers=1,
        now=now_of(request),
    )


def _preview(request: Request, staff: StaffUser, data: bytes) -> tuple[str, ImportReport]:
    """Keep the upload for the commit step under a new token, and run the import in a
    transaction that is rolled back; returns the token and what the import would do."""
    directory = uploads_dir(request)
    directory.mkdir(mode=0o700, exist_ok=True)
    forget_stale_uploads(directory, now_of(request))
    token = _new_token(now_of(request))
    path = directory / f"{token}.csv"
    path.write_bytes(data)
    path.chmod(0o600)
    try:
        with get_session_factory(request)() as session:
            try:
                return token, _run_import(session, request, staff, path)
            finally:
                session.rollback()
    except OutreachError:
        path.unlink(missing_ok=True)
        raise


@router.post("/contacts/import", response_class=HTMLResponse)
async def import_preview(request: Request, staff: Staff, form: CheckedForm) -> HTMLResponse:
    upload = form.get("file")
    errors = forms.FormErrors()
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors.add("file", "Choose a CSV file to import")
        return _page(request, staff, errors=errors, status_code=400)
    data = await upload.read()
    if len(data) > MAX_UPLOAD_BYTES:
        errors.add("file", "The file is larger than 200 MB: import it with the command line instead")
        return _page(request, staff, errors=errors, status_code=400)
    try:
        # In the thread pool: a preview of a large file takes seconds of CPU and database
        # time, which on the event loop would hold up every other request, webhooks included.
        token, report = await run_in_threadpool(_preview, request, staff, data)
    except OutreachError as exc:
        errors.add("file", str(exc))
        return _page(request, staff, errors=errors, status_code=400)
    return _page(request, staff, report=report, token=token)


@router.post("/contacts/import/commit", response_class=HTMLResponse)
def import_commit(request: Request, staff: Staff, form: CheckedForm) -> HTMLResponse:
    path = _upload_path(uploads_dir(request), forms.text(form, "token"), now_of(request))
    if path is None:
        errors = forms.FormErrors()
        errors.add("file", "That upload has expired or was already imported: choose the file again")
        return _page(request, staff, errors=errors, status_code=400)
    try:
        with transaction(get_session_factory(request)) as session:
            report = _run_import(session, request, staff, path)
            audit.record(
                session,
                staff.actor,
                "contacts.import",
                now_of(request),
                detail={
                    "rows": report.rows,
                    "added": report.added,
                    "updated": report.updated,
                    "rejected": report.rejected,
                },
            )
    finally:
        path.unlink(missing_ok=True)
    return _page(request, staff, report=report, committed=True)


@router.get("/contacts/export")
def export(request: Request, staff: Staff) -> Response:
    directory = Path(tempfile.mkdtemp(prefix="outreach-export-"))
    path = directory / "contacts.csv"
    with transaction(get_session_factory(request)) as session:
        count = export_contacts_csv(session, path)
        audit.record(session, staff.actor, "contacts.export", now_of(request), detail={"rows": count})
    return FileResponse(
        path,
        media_type="text/csv",
        filename="contacts.csv",
        background=BackgroundTask(shutil.rmtree, directory, ignore_errors=True),
    )
