"""The service's routers, one per resource, all under ``/v1`` (health checks at the root)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from . import admin, audit, auth, health, members, partners, stats, wallets

__all__ = ["ALL", "TAGS"]

ALL: tuple[APIRouter, ...] = (
    auth.router,
    members.router,
    wallets.router,
    partners.router,
    stats.router,
    admin.router,
    audit.router,
    health.router,
)

TAGS: list[dict[str, Any]] = [
    {"name": "sign-in", "description": "Members sign in: Sign-In with Ethereum, passkeys; sessions."},
    {"name": "members", "description": "The coalition's directory: enrolment, linking, personal data."},
    {"name": "wallets", "description": "Balances, points by epoch and expiry, tiers, history."},
    {
        "name": "partners",
        "description": "The partner directory; partners' and the coalition pool's positions, prices and "
        "settlement statements.",
    },
    {"name": "stats", "description": "Programme metrics: redemption, breakage, liability, activity."},
    {"name": "admin", "description": "API keys."},
    {
        "name": "audit",
        "description": "The whole ledger for auditors: entries and exports, supply and liability, the "
        "hash-chain head and reconciliation against the chain, timelock operations.",
    },
    {"name": "health", "description": "Liveness and readiness."},
]
