"""The MLLP listener for HL7 v2 (``carejoin mllp --port``), on the ``hl7`` library's streams.

Each connection is served in order: a message is processed (``feeds.adt.receive``) and
acknowledged before the next is read, so a sender's messages are applied in the order sent.
The raw block is kept as received, so even a message that cannot be parsed is acknowledged
(AR) and kept as a dead letter rather than dropped.

The listener serves one source system (``carejoin mllp --source``, checked against the
registry): every message is applied under that system's writer scope, so a message whose
MSH-4 names another organisation is refused (AR) and what it sends is attributed to it.
"""

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from hl7.mllp import InvalidBlockError, start_hl7_server
from starlette.concurrency import run_in_threadpool

from fhir_gateway.access import writer
from fhir_gateway.access.writer import WriterScope
from fhir_gateway.db import UnitOfWork
from fhir_gateway.feeds import adt

log = logging.getLogger("carejoin.mllp")


def _decode(block: bytes) -> str:
    try:
        return block.decode("utf-8")
    except UnicodeDecodeError:
        return block.decode("latin-1")


async def serve(
    unit_of_work: UnitOfWork,
    *,
    host: str,
    port: int,
    base_url: str,
    max_bytes: int = 10 * 1024 * 1024,
    scope: WriterScope | None = None,
) -> asyncio.AbstractServer:
    """Start listening; the caller keeps the returned server running (``serve_forever``).
    ``scope``: the source system's writer scope (``writer.registered_scope``), bound for
    every connection (None: trusted, as before a registry existed)."""

    async def connection(reader: Any, stream: Any) -> None:
        writer.bind(scope)  # this connection's task; the thread pool inherits it
        peer = stream.get_extra_info("peername")
        try:
            while True:
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    return  # the sender closed the connection
                except (InvalidBlockError, ValueError) as exc:
                    log.warning("MLLP framing error from %s: %s; closing", peer, exc)
                    return
                receipt = await run_in_threadpool(
                    adt.receive,
                    unit_of_work,
                    _decode(block),
                    now=datetime.now(UTC),
                    base_url=base_url,
                )
                stream.writeblock(receipt.ack.encode())
                await stream.drain()
        finally:
            stream.close()

    server: asyncio.AbstractServer = await start_hl7_server(
        connection, host=host, port=port, limit=max_bytes
    )
    return server
