"""The console's routes, assembled: api/app.py includes this one router. None of them is in
the OpenAPI document: they answer pages, not the API."""

from __future__ import annotations

from fastapi import APIRouter

from stockyard.console import account_pages, admin_pages, inventory_pages, support_pages

router = APIRouter()
router.include_router(account_pages.router)
router.include_router(admin_pages.router)
router.include_router(inventory_pages.router)
router.include_router(support_pages.router)
