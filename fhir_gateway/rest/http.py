"""HTTP details of the FHIR RESTful API: media types, Prefer, ETag and If-Match, body limits."""

from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from starlette.requests import Request

from fhir_gateway.outcomes import (
    Invalid,
    NotAcceptable,
    PayloadTooLarge,
    PreconditionFailed,
    UnsupportedMediaType,
)

FHIR_JSON = "application/fhir+json"
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Prefer:
    """``Prefer: return=...`` and ``handling=...`` (R4 3.1.0.11 and 3.1.1.4)."""

    return_: str = "representation"
    strict: bool = False


def parse_prefer(header: str | None) -> Prefer:
    return_ = "representation"
    strict = False
    for part in (header or "").split(","):
        for token in part.split(";"):
            name, _, value = token.strip().partition("=")
            value = value.strip().strip('"')
            if name.strip() == "return" and value in (
                "minimal",
                "representation",
                "OperationOutcome",
            ):
                return_ = value
            elif name.strip() == "handling":
                strict = value == "strict"
    return Prefer(return_=return_, strict=strict)


def media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def check_content_type(request: Request, *, allow_form: bool = False) -> str:
    kind = media_type(request.headers.get("content-type"))
    if kind in JSON_TYPES or (allow_form and kind == FORM):
        return kind
    raise UnsupportedMediaType(
        f"Content-Type '{kind or '(none)'}' is not supported; send {FHIR_JSON}"
    )


def check_accept(request: Request) -> None:
    """Refuse XML and other formats this server does not produce (406)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt not in ("json", FHIR_JSON, "application/json"):
        raise NotAcceptable(f"_format '{fmt}' is not supported; this server speaks {FHIR_JSON}")
    accept = request.headers.get("accept")
    if not accept:
        return
    for item in accept.split(","):
        kind = media_type(item)
        if (
            kind in JSON_TYPES
            or kind in ("*/*", "application/*", "")
            or kind.startswith("text/html")
        ):
            return
    raise NotAcceptable(f"Cannot answer with '{accept}'; this server speaks {FHIR_JSON}")


async def read_body(request: Request, *, limit: int) -> bytes:
    """Read the body, stopping as soon as it passes ``limit`` bytes (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def etag(version_id: int) -> str:
    return f'W/"{version_id}"'


def parse_if_match(header: str | None) -> int | None:
    """``W/"3"`` (or ``"3"``) -> 3; anything else is a 412, as the client's precondition fails."""
    if header is None:
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit():
        raise PreconditionFailed(f"If-Match '{header}' is not a version ETag like W/\"1\"")
    return int(value)


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def require_json_object_body(kind: str) -> None:
    if kind not in JSON_TYPES:
        raise Invalid("A FHIR JSON body is required")
