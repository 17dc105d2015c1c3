"""The support page: a platform engineer pastes a request id and sees its trace, exactly as
the API's support route answers it (tenant, route, status, times, deliveries; no business
data), read as the support role and audited under the platform."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from stockyard.audit import service as audit_service
from stockyard.console.forms import Problem
from stockyard.console.pages import PREFIX, render
from stockyard.console.pipeline import SupportConsoleContext

router = APIRouter(prefix=PREFIX, include_in_schema=False)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@router.get("/support")
async def support_page(
    request: Request,
    caller: SupportConsoleContext,
    request_id: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    wanted = (request_id or "").strip()
    me = caller.console
    context: dict[str, Any] = {"title": "Support trace", "request_id_query": wanted}
    if not wanted:
        return render(request, "support.html", me=me, trace=None, error=None, limit=0, **context)
    if not REQUEST_ID.match(wanted):
        problem = Problem(
            422, "Check the request id", "A request id is 1 to 128 letters, digits and . _ : -"
        )
        return render(
            request,
            "support.html",
            status=422,
            me=me,
            trace=None,
            error=problem,
            limit=0,
            **context,
        )
    trace = await audit_service.request_trace(caller.session, caller.principal, request_id=wanted)
    return render(
        request,
        "support.html",
        me=me,
        trace=trace,
        error=None,
        limit=audit_service.TRACE_LIMIT,
        **context,
    )
