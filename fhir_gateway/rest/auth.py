"""The development issuer's public keys (JWKS). Absent when a real identity provider is used."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.outcomes import NotFound
from fhir_gateway.validation import dumps

router = APIRouter(prefix="/auth")


@router.get("/jwks.json")
async def jwks(request: Request) -> Response:
    issuer: DevelopmentIssuer | None = request.app.state.development_issuer
    if issuer is None:
        raise NotFound("This server trusts an external identity provider; see its JWKS")
    return Response(content=dumps(issuer.jwks()), media_type="application/jwk-set+json")
