"""The MLLP listener over a real socket, on both databases (its own database or schema,
since the listener commits)."""

import asyncio
from collections.abc import Iterator

import pytest
from hl7.mllp import open_hl7_connection
from sqlalchemy import Engine, select

from fhir_gateway.app import unit_of_work_factory
from fhir_gateway.db import session_factory_for
from fhir_gateway.feeds import mllp
from fhir_gateway.feeds.models import Hl7Message
from tests.conftest import own_engine
from tests.fhir_gateway.feeds.messages import adt


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with own_engine(request.param, tmp_path_factory, "mllp") as e:
        yield e


def test_messages_over_mllp_are_acknowledged_in_order_and_kept(engine: Engine) -> None:
    unit_of_work = unit_of_work_factory(session_factory_for(engine))

    async def exchange() -> list[str]:
        server = await mllp.serve(
            unit_of_work, host="127.0.0.1", port=0, base_url="http://test/fhir"
        )
        port = server.sockets[0].getsockname()[1]
        acks: list[str] = []
        try:
            reader, writer = await open_hl7_connection("127.0.0.1", port)
            for raw in (
                adt("A01", "L1"),
                adt("A03", "L2", discharged="202611051200"),
                "garbage that is not HL7",
            ):
                writer.writeblock(raw.encode())
                await writer.drain()
                acks.append((await reader.readblock()).decode())
            writer.close()
        finally:
            server.close()
            await server.wait_closed()
        return acks

    acks = asyncio.run(exchange())
    codes = [next(s for s in a.split("\r") if s.startswith("MSA|")).split("|")[1] for a in acks]
    assert codes == ["AA", "AA", "AR"]
    with session_factory_for(engine).begin() as session:
        rows = session.execute(select(Hl7Message.control_id, Hl7Message.status)).all()
    statuses = {row.control_id: row.status for row in rows}
    assert statuses["L1"] == "processed"
    assert statuses["L2"] == "processed"
    assert any(s == "rejected" for c, s in rows if c.startswith("unreadable-"))
