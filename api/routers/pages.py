"""The web pages people meet: a member's wallet, a partner's dashboard and an auditor's explorer, served by
the service itself from committed static files (``api/web``: HTML, one style sheet, JavaScript modules; no
build step, nothing fetched from a CDN, so the pages work offline on the embedded defaults).

Why static pages over the JSON API rather than server-rendered HTML: the API under ``/v1`` stays the one
source of every figure, so a number on a page is exactly what a client of the API reads (the browser tests
hold the two against each other), and the pages need no state or templates of their own. They hold no
credential the browser does not already keep: a member's session is the ``HttpOnly`` cookie their sign-in
sets (passkey or Sign-In with Ethereum); a partner's or auditor's API key is typed into a form, kept in the
tab's ``sessionStorage`` and sent as a bearer token.

- ``/``: what the service is, links to the three pages and the API document.
- ``/wallet`` (and ``/enrol``, the page a custodial member's one-time enrolment link opens: the token is in
  the URL's fragment, which never reaches a server or a log).
- ``/partner``, ``/explorer``.
- ``/assets/<name>``: the pages' files, by an allow-list of names (no path ever reaches the file system).

Every page answers with a strict Content-Security-Policy (scripts, styles and connections from this origin
only; no inline script), ``X-Content-Type-Options: nosniff``, no referrer and no framing.

Two small reads the pages need that the API lacked, documented with the rest:

- ``GET /v1/api-key``: the calling API key (role, partner, name, last use; never its token), so a page
  signed in with a key knows whose figures to show;
- ``GET /v1/partners/{partner_id}/api-keys``: a partner's keys (its own key, admin and auditor keys), for the
  dashboard's key list; creating, rotating and revoking them stay the admin's (``/v1/admin/api-keys``).
"""

from __future__ import annotations

import html
import re
from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from sqlalchemy import select

from .._auth import Principal, ServicesDep, allow
from .._errors import Forbidden, NotFound, Unauthenticated
from .._models import problem_responses
from .._tables import ApiKey
from .admin import ApiKeyPublic, ApiKeysPublic

__all__ = ["ASSET_NAME", "PAGES", "SECURITY_HEADERS", "router"]

router = APIRouter(tags=["pages"])

KeyHolder = Annotated[Principal, Depends(allow("admin", "partner", "auditor"))]
PartnerIdPath = Annotated[
    int, Path(ge=0, lt=2**32, description="the partner's id on the ledger", examples=[1])
]

#: The page files, by the path that serves them.
PAGES = {
    "/": "home.html",
    "/wallet": "wallet.html",
    "/enrol": "wallet.html",
    "/partner": "partner.html",
    "/explorer": "explorer.html",
}
#: An asset's name: a flat file of the web directory with one of the types below.
ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}\.(css|js|svg)$")
_TYPES = {
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
    "html": "text/html; charset=utf-8",
}
#: QR codes are SVG images in ``data:`` URLs; everything else comes from this origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidated on every load (the files are small): a new release is seen at once.
    "Cache-Control": "no-cache",
}


@cache
def _file(name: str) -> bytes | None:
    """A file of ``api/web`` (package data), read once; None when there is no such file."""
    resource = files("api").joinpath("web", name)
    return resource.read_bytes() if resource.is_file() else None


#: Where a page learns the service's public origin (``public_url``): WebAuthn and Sign-In with Ethereum work
#: only there, so the wallet sends a visitor who came by another address (127.0.0.1 for localhost) to it.
_PUBLIC_URL = b'<meta name="loyalty-public-url" content="">'


def _serve(name: str, public_url: str | None = None) -> Response:
    body = _file(name)
    if body is None:
        raise NotFound(f"no page asset {name!r}")
    if public_url is not None:
        filled = f'<meta name="loyalty-public-url" content="{html.escape(public_url)}">'
        body = body.replace(_PUBLIC_URL, filled.encode())
    media_type = _TYPES[name.rsplit(".", 1)[1]]
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


def _page_route(path: str, name: str) -> None:
    def page(services: ServicesDep) -> Response:
        return _serve(name, services.settings.public_url.rstrip("/"))

    page.__name__ = f"page_{name.removesuffix('.html')}_{path.strip('/') or 'home'}"
    router.add_api_route(path, page, methods=["GET"], include_in_schema=False, response_class=Response)


for _path, _name in PAGES.items():
    _page_route(_path, _name)


@router.get("/assets/{name}", include_in_schema=False, response_class=Response)
def asset(name: str) -> Response:
    """One of the pages' files (style sheet, scripts, icons)."""
    if not ASSET_NAME.match(name):
        raise NotFound(f"no page asset {name!r}")
    return _serve(name)


# --------------------------------------------------------------------------- the reads the pages need


@router.get(
    "/v1/api-key",
    response_model=ApiKeyPublic,
    responses=problem_responses(Unauthenticated, Forbidden),
    summary="The calling API key",
)
def current_api_key(caller: KeyHolder, services: ServicesDep) -> ApiKeyPublic:
    """The API key this request is signed with: its role, partner (a partner key), name, creation, last use
    and the key it replaced (never its token). A page signed in with a key reads whose figures to show."""
    with services.session() as db:
        key = db.get(ApiKey, caller.credential_id)
        if key is None:  # revoked keys never get here; a key deleted under the request
            raise Unauthenticated("unknown API key")
        return ApiKeyPublic.of(key)


@router.get(
    "/v1/partners/{partner_id}/api-keys",
    response_model=ApiKeysPublic,
    responses=problem_responses(Unauthenticated, Forbidden),
    summary="A partner's API keys",
)
def partner_api_keys(
    partner_id: PartnerIdPath,
    caller: KeyHolder,
    services: ServicesDep,
    include_revoked: Annotated[bool, Query(description="revoked and rotated keys too")] = False,
) -> ApiKeysPublic:
    """The partner's API keys, oldest first (never their tokens): names, when each was created and last
    used, which key each replaced. The partner's own keys, admin and auditor keys; an admin creates,
    rotates and revokes them (``/v1/admin/api-keys``)."""
    if not caller.may_see_partner(partner_id):
        raise Forbidden("a partner key reads only its own partner's keys")
    query = select(ApiKey).where(ApiKey.partner_id == partner_id).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with services.session() as db:
        return ApiKeysPublic(data=[ApiKeyPublic.of(k) for k in db.scalars(query)])
