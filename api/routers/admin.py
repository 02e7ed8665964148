"""Admin: API keys (create, list, rotate, revoke). Admin keys only; the token of a new key is in the
response once and nowhere else."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import Field

from .._auth import Principal, ServicesDep, allow
from .._errors import Conflict, Forbidden, NotFound, Unauthenticated
from .._keys import create_key, list_keys, revoke_key, rotate_key
from .._models import TEXT, RequestModel, ResponseModel, link, linked_response, problem_responses
from .._tables import ApiKey

__all__ = ["ApiKeyCreate", "ApiKeyCreatedPublic", "ApiKeyPublic", "ApiKeysPublic", "router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])
Admin = Annotated[Principal, Depends(allow("admin"))]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", examples=["3f9c0a1b2c4d"])]


class ApiKeyCreate(RequestModel):
    role: Literal["admin", "partner", "auditor"]
    name: str = Field(min_length=1, max_length=200, pattern=TEXT, examples=["coffee chain POS"])
    partner_id: int | None = Field(default=None, ge=0, lt=2**32, description="a partner key's partner")


class ApiKeyPublic(ResponseModel):
    id: str
    role: str
    partner_id: int | None
    name: str
    created_at: int
    created_by: str | None
    last_used_at: int | None
    revoked_at: int | None
    rotated_from: str | None
    prefix: str = Field(description="how the key's token begins (lpk_<id>_)")

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyPublic:
        return cls(
            id=key.id,
            role=key.role,
            partner_id=key.partner_id,
            name=key.name,
            created_at=key.created_at,
            created_by=key.created_by,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            rotated_from=key.rotated_from,
            prefix=f"lpk_{key.id}_",
        )


class ApiKeyCreatedPublic(ApiKeyPublic):
    token: str = Field(description="the key itself: shown this once, never again")


class ApiKeysPublic(ResponseModel):
    data: list[ApiKeyPublic]
    next_cursor: str | None = None


ERRORS = problem_responses(Unauthenticated, Forbidden)
#: What an admin does next with a key just created or rotated.
CREATED_LINKS = {
    "RotateKey": link(
        "POST", "/v1/admin/api-keys/{key_id}/rotate", "replace it with a new key", key_id="$response.body#/id"
    ),
    "RevokeKey": link("DELETE", "/v1/admin/api-keys/{key_id}", "revoke it", key_id="$response.body#/id"),
}
CREATED = linked_response(201, "The key, with its token (shown this once)", CREATED_LINKS)


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreatedPublic,
    responses={**CREATED, **ERRORS},
    summary="Create a key",
)
def create_api_key(body: ApiKeyCreate, admin: Admin, services: ServicesDep) -> ApiKeyCreatedPublic:
    with services.session() as db:
        created = create_key(
            db,
            role=body.role,
            name=body.name,
            partner_id=body.partner_id,
            now=services.now(),
            created_by=admin.credential_id,
        )
        return ApiKeyCreatedPublic(**ApiKeyPublic.of(created.key).model_dump(), token=created.token)


@router.get("/api-keys", response_model=ApiKeysPublic, responses=ERRORS, summary="List keys")
def get_api_keys(admin: Admin, services: ServicesDep, include_revoked: bool = False) -> ApiKeysPublic:
    with services.session() as db:
        return ApiKeysPublic(
            data=[ApiKeyPublic.of(k) for k in list_keys(db, include_revoked=include_revoked)]
        )


@router.post(
    "/api-keys/{key_id}/rotate",
    status_code=201,
    response_model=ApiKeyCreatedPublic,
    responses={**CREATED, **problem_responses(Unauthenticated, Forbidden, NotFound, Conflict)},
    summary="Rotate a key",
)
def rotate_api_key(key_id: KeyId, admin: Admin, services: ServicesDep) -> ApiKeyCreatedPublic:
    """A new key with the same role and scope; the old one is revoked at once."""
    with services.session() as db:
        created = rotate_key(db, key_id, now=services.now(), created_by=admin.credential_id)
        return ApiKeyCreatedPublic(**ApiKeyPublic.of(created.key).model_dump(), token=created.token)


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKeyPublic,
    responses=problem_responses(Unauthenticated, Forbidden, NotFound, Conflict),
    summary="Revoke a key",
)
def revoke_api_key(key_id: KeyId, admin: Admin, services: ServicesDep) -> ApiKeyPublic:
    """Revoked at once: the next request with the key is refused (401)."""
    with services.session() as db:
        return ApiKeyPublic.of(revoke_key(db, key_id, now=services.now()))
