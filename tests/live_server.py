"""A server running for real: uvicorn in a thread, on a free port of the loopback interface."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI

from fhir_gateway.app import create_app
from fhir_gateway.auth.dependencies import development_issuer
from fhir_gateway.settings import AuthSettings, GatewaySettings
from tests.conftest import SYSTEM_CLAIMS, own_engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: FastAPI, port: int) -> Iterator[None]:
    """``app`` answering on ``http://127.0.0.1:{port}`` until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def live_service(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    auth_settings: AuthSettings,
    agreement_path: str,
    *,
    name: str,
    dispatch_events: bool = True,
) -> Iterator[tuple[str, str]]:
    """The gateway serving its own database (a new SQLite file or PostgreSQL schema:
    ``backend``) for real until the block ends: its FHIR base URL and a system client's
    token for it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/fhir"
    with own_engine(backend, tmp_path_factory, name) as engine:
        auth = auth_settings.model_copy(update={"audience": url})
        settings = GatewaySettings(
            database_url=str(engine.url),
            base_url=url,
            auth=auth,
            agreement_path=agreement_path,
            dispatch_events=dispatch_events,
        )
        with serving(create_app(settings, engine=engine), port):
            yield url, development_issuer(auth).issue(SYSTEM_CLAIMS)
