"""Reading console forms and saying what was wrong with them, in words for people.

The console builds the API's own request bodies from its forms, so a value the API would
refuse is refused here with the same rule; the failure comes back to the form as a
`Problem` (status, title, message, the fields at fault), never as a stack of JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from stockyard.console.pages import PREFIX, redirect
from stockyard.console.pipeline import FORM_LIMITS, ConsoleCaller, sessions_of
from stockyard.core import audit_trail
from stockyard.core.errors import AppError
from stockyard.core.principal import AccessClaims

TITLES = {
    403: "Not allowed",
    404: "Not found",
    409: "Not done: it conflicts with the current state",
    412: "Changed meanwhile: reload and try again",
    422: "Check what you entered",
    429: "Too many requests: wait a moment",
}


@dataclass(frozen=True, slots=True)
class Problem:
    status: int
    title: str
    message: str
    fields: list[str] = field(default_factory=list)


async def form_of(request: Request) -> FormData:
    return await request.form(**FORM_LIMITS)


def text(form: FormData, name: str, limit: int = 500) -> str:
    """A text field, trimmed; anything longer than `limit` is cut (the API's own length
    rules then refuse what is still too long for it)."""
    value = form.get(name)
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def problem_of(failed: ValidationError | ValueError | AppError) -> Problem:
    if isinstance(failed, AppError):
        status = failed.status_code
        return Problem(status, TITLES.get(status, "That could not be done"), failed.message)
    if isinstance(failed, ValidationError):
        # Which field and what rule; never the value entered (it may be a password).
        fields = [
            f"{'.'.join(str(part) for part in error['loc']) or 'form'}: {error['msg']}"
            for error in failed.errors(include_input=False, include_url=False)
        ]
        return Problem(422, TITLES[422], "Some fields are not valid.", fields)
    return Problem(422, TITLES[422], "A number field holds something that is not a number.")


async def refused(
    request: Request,
    session: AsyncSession,
    principal: AccessClaims,
    failed: ValidationError | ValueError | AppError,
) -> Problem:
    """A form the service refused: whatever it wrote before refusing is rolled back (a failed
    request leaves nothing behind), the refusal is audited as the API's would be (a denial, a
    conflict), and the page is drawn again in a fresh transaction, scoped to the tenant as
    the first was."""
    await session.rollback()
    if isinstance(failed, AppError):
        await audit_trail.record_refusal(
            request.app.state.sessionmaker,
            principal,
            status=failed.status_code,
            code=failed.code,
            method=request.method,
            route=getattr(request.scope.get("route"), "path", None),
        )
    return problem_of(failed)


async def flash_and_redirect(
    request: Request, caller: ConsoleCaller, page: str, **message: str
) -> Response:
    """Post/redirect/get: a form that succeeded leaves its message (or a secret shown once)
    for the page it sends the browser to, so a reload or Back never posts it again."""
    await sessions_of(request).flash(caller.session_id, PREFIX + page, message)
    return redirect(PREFIX + page)


async def taken_flash(request: Request, caller: ConsoleCaller) -> dict[str, str]:
    """What the form that redirected here left for this page, once."""
    taken = await sessions_of(request).take_flash(caller.session_id, request.url.path)
    return taken or {}


def local_instant(value: str | None) -> datetime | None:
    """A `datetime-local` filter, read as UTC (the pages say so); ValueError when it is not a
    time, or one that has no UTC equivalent (year 1 with an offset east of Greenwich)."""
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None
