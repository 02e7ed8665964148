"""Rewards: each partner's catalogue of what points buy (a name, a points price, an optional stock and
validity window), and across partners what can be redeemed where right now.

The catalogues are public, as the partner directory is: anyone may read them, members included. A partner
key manages its own catalogue, an admin key any; a reward is retired, never deleted (redemptions name it).
A reward with a stock loses one with each redemption by ``reward_id`` (taken atomically: never below zero).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer import Partner, PartnerStatus

from .._auth import Caller, Principal, ServicesDep, allow
from .._errors import FieldError, Forbidden, InvalidRequest, NotFound, NotReady, Unauthenticated
from .._models import NO_NUL, TEXT, RequestModel, ResponseModel, problem_responses
from .._pagination import SeqPage
from .._redemptions import MAX_POINTS, available_rewards
from .._services import Services
from .._tables import PartnerProfile, Reward

__all__ = ["RewardCreate", "RewardPublic", "RewardUpdate", "RewardsPublic", "router"]

router = APIRouter(prefix="/v1", tags=["rewards"])

Owner = Annotated[Principal, Depends(allow("admin", "partner"))]
PartnerIdPath = Annotated[
    int, Path(ge=0, lt=2**32, description="the partner's id on the ledger", examples=[1])
]
RewardIdPath = Annotated[int, Path(ge=1, lt=2**63, description="the reward's id", examples=[7])]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=TEXT)]
Description = Annotated[str, Field(max_length=2000, pattern=NO_NUL)]
Price = Annotated[int, Field(gt=0, le=MAX_POINTS, description="points")]
Stock = Annotated[int, Field(ge=0, lt=2**63, description="how many are left (omit: unlimited)")]
Time = Annotated[int, Field(ge=0, lt=2**63, description="Unix seconds")]


class RewardCreate(RequestModel):
    name: Name
    description: Description | None = None
    points_price: Price
    stock: Stock | None = None
    valid_from: Time | None = None
    valid_until: Time | None = None

    @model_validator(mode="after")
    def _window(self) -> RewardCreate:
        _check_window(self.valid_from, self.valid_until)
        return self


class RewardUpdate(RequestModel):
    """The fields to change; ``null`` clears ``description``, ``stock`` (unlimited) and the window's ends."""

    name: Name | None = None
    description: Description | None = None
    points_price: Price | None = None
    stock: Stock | None = None
    valid_from: Time | None = None
    valid_until: Time | None = None


class RewardPublic(ResponseModel):
    id: int
    partner_id: int
    partner_name: str | None
    name: str
    description: str | None
    points_price: int
    stock: int | None = Field(description="how many are left; null: unlimited")
    valid_from: int | None
    valid_until: int | None
    created_at: int
    retired_at: int | None
    available: bool = Field(description="redeemable now: not retired, in stock, inside its window")


class RewardsPublic(ResponseModel):
    data: list[RewardPublic]
    next_cursor: str | None


def _check_window(valid_from: int | None, valid_until: int | None) -> None:
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise ValueError("valid_until must be after valid_from")


def _available(reward: Reward, now: int) -> bool:
    return (
        reward.retired_at is None
        and (reward.stock is None or reward.stock > 0)
        and (reward.valid_from is None or reward.valid_from <= now)
        and (reward.valid_until is None or reward.valid_until > now)
    )


def _public(reward: Reward, names: dict[int, str], now: int) -> RewardPublic:
    return RewardPublic(
        id=reward.id,
        partner_id=reward.partner_id,
        partner_name=names.get(reward.partner_id),
        name=reward.name,
        description=reward.description,
        points_price=reward.points_price,
        stock=reward.stock,
        valid_from=reward.valid_from,
        valid_until=reward.valid_until,
        created_at=reward.created_at,
        retired_at=reward.retired_at,
        available=_available(reward, now),
    )


def _names(db: Session) -> dict[int, str]:
    return {p.partner_id: p.name for p in db.scalars(select(PartnerProfile))}


def _require_owner(caller: Principal, partner_id: int) -> None:
    if caller.role == "partner" and caller.partner_id != partner_id:
        raise Forbidden("a partner key manages only its own catalogue")


def _require_partner(services: Services, partner_id: int) -> None:
    with services.mirror() as (view, _):
        if view.partner(partner_id) is None:
            raise NotFound(f"the ledger has no partner {partner_id}")


def _reward(db: Session, partner_id: int, reward_id: int) -> Reward:
    reward = db.get(Reward, reward_id)
    if reward is None or reward.partner_id != partner_id:
        raise NotFound(f"no reward {reward_id} in partner {partner_id}'s catalogue")
    return reward


def _page(rows: list[Reward], limit: int, names: dict[int, str], now: int) -> RewardsPublic:
    more = len(rows) > limit
    rows = rows[:limit]
    return RewardsPublic(
        data=[_public(r, names, now) for r in rows], next_cursor=str(rows[-1].id) if more and rows else None
    )


READ_ERRORS = problem_responses(Unauthenticated, NotFound, NotReady)
WRITE_ERRORS = problem_responses(Unauthenticated, Forbidden, NotFound, NotReady)


@router.post(
    "/partners/{partner_id}/rewards",
    status_code=201,
    response_model=RewardPublic,
    responses=WRITE_ERRORS,
    summary="Add a reward to a partner's catalogue",
)
def create_reward(
    partner_id: PartnerIdPath, body: RewardCreate, owner: Owner, services: ServicesDep
) -> RewardPublic:
    """The partner's own key, or an admin key."""
    _require_owner(owner, partner_id)
    _require_partner(services, partner_id)
    now = services.now()
    with services.session() as db:
        reward = Reward(
            partner_id=partner_id,
            name=body.name,
            description=body.description,
            points_price=body.points_price,
            stock=body.stock,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            created_at=now,
        )
        db.add(reward)
        db.flush()
        return _public(reward, _names(db), now)


@router.get(
    "/partners/{partner_id}/rewards",
    response_model=RewardsPublic,
    responses=READ_ERRORS,
    summary="A partner's catalogue",
)
def list_partner_rewards(
    partner_id: PartnerIdPath,
    caller: Caller,
    services: ServicesDep,
    page: SeqPage,
    include_retired: Annotated[bool, Query(description="retired rewards too")] = False,
) -> RewardsPublic:
    """The partner's rewards, newest first, with whether each can be redeemed now (anyone may read it)."""
    _require_partner(services, partner_id)
    now = services.now()
    with services.session() as db:
        query = select(Reward).where(Reward.partner_id == partner_id)
        if not include_retired:
            query = query.where(Reward.retired_at.is_(None))
        if page.before is not None:
            query = query.where(Reward.id < page.before)
        rows = list(db.scalars(query.order_by(Reward.id.desc()).limit(page.limit + 1)))
        return _page(rows, page.limit, _names(db), now)


@router.get(
    "/partners/{partner_id}/rewards/{reward_id}",
    response_model=RewardPublic,
    responses=READ_ERRORS,
    summary="A reward",
)
def get_reward(
    partner_id: PartnerIdPath, reward_id: RewardIdPath, caller: Caller, services: ServicesDep
) -> RewardPublic:
    with services.session() as db:
        return _public(_reward(db, partner_id, reward_id), _names(db), services.now())


@router.patch(
    "/partners/{partner_id}/rewards/{reward_id}",
    response_model=RewardPublic,
    responses=WRITE_ERRORS,
    summary="Change a reward",
)
def update_reward(
    partner_id: PartnerIdPath,
    reward_id: RewardIdPath,
    body: RewardUpdate,
    owner: Owner,
    services: ServicesDep,
) -> RewardPublic:
    """Changes the fields given (a new price applies to later redemptions; a stock given replaces the
    count left). A retired reward is not changed (404)."""
    _require_owner(owner, partner_id)
    given = body.model_dump(exclude_unset=True)
    for required in ("name", "points_price"):
        if required in given and given[required] is None:
            raise InvalidRequest(
                f"{required} cannot be null", [FieldError(f"body.{required}", "cannot be null")]
            )
    with services.session() as db:
        reward = _reward(db, partner_id, reward_id)
        if reward.retired_at is not None:
            raise NotFound(f"reward {reward_id} was retired")
        valid_from = given.get("valid_from", reward.valid_from)
        valid_until = given.get("valid_until", reward.valid_until)
        try:
            _check_window(valid_from, valid_until)
        except ValueError as exc:
            raise InvalidRequest(str(exc), [FieldError("body.valid_until", str(exc))]) from None
        for name, value in given.items():
            setattr(reward, name, value)
        db.flush()
        return _public(reward, _names(db), services.now())


@router.delete(
    "/partners/{partner_id}/rewards/{reward_id}",
    response_model=RewardPublic,
    responses=WRITE_ERRORS,
    summary="Retire a reward",
)
def retire_reward(
    partner_id: PartnerIdPath, reward_id: RewardIdPath, owner: Owner, services: ServicesDep
) -> RewardPublic:
    """It can no longer be redeemed; it stays readable (``include_retired``). Retiring twice is harmless."""
    _require_owner(owner, partner_id)
    now = services.now()
    with services.session() as db:
        reward = _reward(db, partner_id, reward_id)
        if reward.retired_at is None:
            reward.retired_at = now
            db.flush()
        return _public(reward, _names(db), now)


@router.get(
    "/rewards", response_model=RewardsPublic, responses=READ_ERRORS, summary="What can be redeemed where"
)
def list_rewards(
    caller: Caller,
    services: ServicesDep,
    page: SeqPage,
    partner_id: Annotated[int | None, Query(ge=0, lt=2**32, description="one partner's only")] = None,
    max_points: Annotated[int | None, Query(ge=0, description="priced at most this")] = None,
) -> RewardsPublic:
    """Every reward that can be redeemed now, newest first: not retired, in stock, inside its validity
    window, at a partner that is active and accepts points (anyone may read it)."""
    now = services.now()
    with services.session() as db:
        query = (
            select(Reward)
            .join(Partner, Partner.partner_id == Reward.partner_id)
            .where(available_rewards(now), Partner.status == PartnerStatus.ACTIVE, Partner.can_accept)
        )
        if partner_id is not None:
            query = query.where(Reward.partner_id == partner_id)
        if max_points is not None:
            query = query.where(Reward.points_price <= max_points)
        if page.before is not None:
            query = query.where(Reward.id < page.before)
        rows = list(db.scalars(query.order_by(Reward.id.desc()).limit(page.limit + 1)))
        return _page(rows, page.limit, _names(db), now)
