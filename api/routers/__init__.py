"""The service's routers, one per resource, all under ``/v1`` (health checks at the root)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from . import admin, health, members, wallets

__all__ = ["ALL", "TAGS"]

ALL: tuple[APIRouter, ...] = (members.router, wallets.router, admin.router, health.router)

TAGS: list[dict[str, Any]] = [
    {"name": "members", "description": "The coalition's directory: enrolment, linking, personal data."},
    {"name": "wallets", "description": "Balances, points by epoch and expiry, tiers, history."},
    {"name": "admin", "description": "API keys."},
    {"name": "health", "description": "Liveness and readiness."},
]
