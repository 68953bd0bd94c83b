"""The deployable service: the gateway's app factory plus coordination's extension."""

from fastapi import FastAPI
from sqlalchemy import Engine

from carejoin import __version__
from carejoin.personas import personas
from carejoin.settings import Settings, get_settings
from coordination.extension import extension as coordination
from fhir_gateway.app import create_app


def create_service(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    """The carejoin ASGI app (``uvicorn --factory carejoin.app:create_service``)."""
    settings = settings or get_settings()
    # The development issuer's sign-in page offers the demo personas.
    demo_people = tuple(personas().values()) if settings.auth.development_issuer else ()
    return create_app(
        settings.gateway(),
        extensions=(coordination(settings.coordination, agreement_path=settings.agreement_path),),
        engine=engine,
        version=__version__,
        personas=demo_people,
    )
