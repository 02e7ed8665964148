"""The service's routers, one per resource, all under ``/v1`` (health checks at the root)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from . import (
    admin,
    audit,
    auth,
    coalition,
    earning,
    health,
    members,
    metrics,
    operations,
    pages,
    partners,
    redemptions,
    rewards,
    rules,
    stats,
    wallets,
    webhooks,
)

__all__ = ["ALL", "TAGS"]

ALL: tuple[APIRouter, ...] = (
    auth.router,
    members.router,
    wallets.router,
    partners.router,
    rules.router,
    earning.router,
    operations.router,
    rewards.router,
    redemptions.router,
    webhooks.router,
    stats.router,
    admin.router,
    coalition.router,
    audit.router,
    health.router,
    metrics.router,
    pages.router,
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
    {
        "name": "rules",
        "description": "Earning rule sets (data, published by hash so any issuance can be recomputed) and "
        "quotes.",
    },
    {
        "name": "earning",
        "description": "Purchases, returns, engagements and adjustments: computed, committed, then sent to "
        "the chain.",
    },
    {"name": "operations", "description": "What became of each write: pending to confirmed, or why not."},
    {"name": "rewards", "description": "Partners' rewards catalogues; what can be redeemed where."},
    {
        "name": "redemptions",
        "description": "Spending points with the member's consent: intents, redemption codes, refunds, "
        "revocations.",
    },
    {
        "name": "webhooks",
        "description": "Partners' subscriptions to events (points issued, released, redeemed, reversed, "
        "expiring, tier changes, rewards within reach, failed operations), signed per Standard Webhooks; "
        "delivery logs and replays.",
    },
    {"name": "stats", "description": "Programme metrics: redemption, breakage, liability, activity."},
    {
        "name": "admin",
        "description": "API keys; coalition operations (partner onboarding, allowances, suspension, operator "
        "rotation, rights, settlement, transfers, pause), sent directly or scheduled through the timelock.",
    },
    {
        "name": "audit",
        "description": "The whole ledger for auditors: entries and exports, supply and liability, the "
        "hash-chain head and reconciliation against the chain, timelock operations.",
    },
    {"name": "health", "description": "Liveness and readiness."},
    {
        "name": "pages",
        "description": "What the web pages (/, /wallet, /partner, /explorer) read besides the routes above: "
        "the calling API key and a partner's keys.",
    },
]
