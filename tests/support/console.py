"""A console user over HTTP: a cookie jar of its own, the CSRF token scraped from the pages it
was served, and form posts as a browser sends them (same-origin headers included)."""

from __future__ import annotations

import re
from types import TracebackType

import httpx
from fastapi import FastAPI

from tests.support.helpers import PASSWORD

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
SAME_ORIGIN = {"Origin": "http://test", "Sec-Fetch-Site": "same-origin"}


class ConsoleUser:
    def __init__(self, app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://test")
        self.csrf = ""

    async def __aenter__(self) -> ConsoleUser:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.http.aclose()

    def _remember_token(self, response: httpx.Response) -> None:
        found = CSRF_FIELD.search(response.text)
        if found:
            self.csrf = found.group(1)

    async def get(self, path: str, **params: str) -> httpx.Response:
        response = await self.http.get(path, params=params)
        self._remember_token(response)
        return response

    async def post(
        self,
        path: str,
        data: dict[str, str | list[str]] | None = None,
        *,
        csrf: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        form: dict[str, str | list[str]] = {
            "csrf_token": self.csrf if csrf is None else csrf,
            **(data or {}),
        }
        response = await self.http.post(path, data=form, headers=headers or SAME_ORIGIN)
        self._remember_token(response)
        return response

    async def sign_in(
        self, *, tenant: str | None, email: str, password: str = PASSWORD
    ) -> httpx.Response:
        await self.get("/console/sign-in")
        return await self.post(
            "/console/sign-in",
            {"tenant": tenant or "", "email": email, "password": password},
        )

    async def signed_in(self, *, tenant: str | None, email: str) -> ConsoleUser:
        response = await self.sign_in(tenant=tenant, email=email)
        assert response.status_code == 303, response.text
        landing = await self.get(response.headers["location"])
        assert landing.status_code == 200, landing.text
        return self
