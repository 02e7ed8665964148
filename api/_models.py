"""Shared parts of the request and response schemas.

Schema families follow one pattern: ``XCreate`` / ``XUpdate`` (requests; unknown fields refused), ``XPublic``
(one resource as the caller may see it) and ``XsPublic`` (``{data: [XPublic], next_cursor}``, one page).
Points and settlement values are exact JSON integers (a JavaScript client parsing figures beyond 2^53
needs a big-integer reviver); prices are decimal strings. Addresses are EIP-55 checksummed, hashes and
references ``0x`` hex, times Unix seconds.

Every response carrying ledger figures has ``as_of``: the mirror's block and the time the live figures are
computed for.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ._errors import PROBLEMS, ApiError
from ._services import AsOf

PROBLEM_JSON = "application/problem+json"

__all__ = [
    "NO_NUL",
    "TEXT",
    "AsOfPublic",
    "FieldErrorPublic",
    "IsoDate",
    "ProblemPublic",
    "RequestModel",
    "ResponseModel",
    "hex0x",
    "link",
    "linked_response",
    "problem_responses",
]


#: A pattern for free text in requests: anything but NUL, which PostgreSQL text cannot hold (the document
#: says so, and the request is refused with 422 instead of failing in the database).
NO_NUL = r"^[^\x00]*$"
#: White space as :class:`RequestModel` strips it (Unicode White_Space), spelled out: ``\s`` means other
#: characters in the document's regexes (ECMA 262) than in pydantic's (Rust).
_SPACE = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: A pattern for a required name or id: no NUL, and something besides white space (which is stripped).
TEXT = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"


class RequestModel(BaseModel):
    """A request body: unknown fields are refused (422), strings are stripped, and values must have the JSON
    type the API document states (strict: no ``"5"`` or ``5.0`` for an integer, no ``1`` for a boolean)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


def _iso_date(value: Any) -> dt.date:
    if isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return dt.date.fromisoformat(value)  # ValueError (422) for a day that does not exist
    raise ValueError("a date is a string YYYY-MM-DD")


#: A request's date: the document's ``format: date`` string and nothing else (pydantic would also take a
#: Unix time or a date-time at midnight; a strict model takes no string at all, FastAPI validating parsed
#: JSON).
IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AsOfPublic(ResponseModel):
    """What the figures are as of."""

    block_number: int = Field(description="the last block the mirror holds every entry of")
    block_hash: str | None = Field(description="its hash")
    block_timestamp: int = Field(description="its timestamp (Unix seconds)")
    time: int = Field(
        description="the time (Unix seconds) live figures are computed for: now, never before the block; "
        "as balanceOf computes them in a block with this timestamp"
    )
    chain_id: int

    @classmethod
    def of(cls, as_of: AsOf) -> AsOfPublic:
        return cls(
            block_number=as_of.block_number,
            block_hash=as_of.block_hash,
            block_timestamp=as_of.block_timestamp,
            time=as_of.time,
            chain_id=as_of.chain_id,
        )


class FieldErrorPublic(BaseModel):
    field: str = Field(examples=["body.customer_id"])
    message: str = Field(examples=["Field required"])


class ProblemPublic(BaseModel):
    """An RFC 9457 problem (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["/problems/not-found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(examples=[404])
    detail: str = Field(examples=["no member mem_... among this partner's members"])
    instance: str = Field(examples=["/v1/members/mem_..."])
    request_id: str = Field(examples=["5f0c2b1e9a7d4c3b"])
    errors: list[FieldErrorPublic] | None = Field(default=None, description="invalid-request: each field")
    reason: str | None = Field(default=None, description="sign-in-failed: the check that failed")
    retry_after: int | None = Field(default=None, description="rate-limited: seconds to wait")


def hex0x(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def link(method: str, path: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link (a response's ``links``) to the operation ``method path`` of this document, its
    parameters given as runtime expressions (``$response.body#/id``, ``$request.path.address``): what a
    client, and schemathesis' stateful tests, can call next with what this response returned."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    operation = f"#/paths/{pointer}/{method.lower()}"
    return {"operationRef": operation, "parameters": parameters, "description": description}


def linked_response(
    status: int, description: str, links: dict[str, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the route's own status with its :func:`link` s (FastAPI adds the model)."""
    return {status: {"description": description, "links": links}}


def problem_responses(*errors: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting each error a route can answer with (plus 422 and 429, which every
    route can)."""
    by_status: dict[int, list[type[ApiError]]] = {}
    for error in (*errors, PROBLEMS["invalid-request"], PROBLEMS["rate-limited"]):
        by_status.setdefault(error.status, []).append(error)
    return {
        status: {
            "model": ProblemPublic,
            "description": " / ".join(f"{e.slug}: {e.description}" for e in dict.fromkeys(kinds)),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemPublic"}}},
        }
        for status, kinds in sorted(by_status.items())
    }
