"""``GET /metrics``: the service's Prometheus metrics (``api/_metrics.py``), at the root beside the health
checks.

Left out of the OpenAPI document: it is for Prometheus, not for the API's clients, and answers in
Prometheus's text format (``text/plain; version=0.0.4``), not JSON. With ``LOYALTY_METRICS_TOKEN`` set it
answers only ``Authorization: Bearer <that token>`` (a 401 problem otherwise); unset, anyone who reaches
it, so keep it on the internal network then.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from .._auth import ServicesDep
from .._errors import Unauthenticated
from .._metrics import CONTENT_TYPE, Metrics

__all__ = ["router"]

router = APIRouter()


@router.get("/metrics", include_in_schema=False, response_class=Response)
def metrics(request: Request, services: ServicesDep) -> Response:
    token = services.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise Unauthenticated("/metrics needs 'Authorization: Bearer <the metrics token>'")
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=CONTENT_TYPE)
