"""What coordination's routers share: a plain JSON answer."""

from fastapi.responses import Response

from fhir_gateway.api import dumps


def json_response(body: object, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")
