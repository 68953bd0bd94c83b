"""``carejoin sources load|list`` and the command-line feeds naming their source (MLLP, CLD),
on both databases (a database or schema of their own: the commands commit)."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hl7.mllp import open_hl7_connection
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from carejoin import cli
from carejoin.demo import source_systems
from carejoin.settings import Settings
from fhir_gateway.access.writer import registered_scope
from fhir_gateway.app import unit_of_work_factory
from fhir_gateway.db import session_factory_for
from fhir_gateway.feeds import mllp
from fhir_gateway.store.models import ResourceRow
from tests.conftest import own_engine
from tests.fhir_gateway.feeds.messages import adt
from tests.fhir_gateway.feeds.test_cld import extract, row


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    with own_engine(request.param, tmp_path_factory, "sources-cli") as e:
        yield e


def test_sources_load_and_list_then_feeds_must_name_a_source(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(database_url=url))
    runner = CliRunner()
    extract_file = tmp_path / "extract.csv"
    extract_file.write_text(extract(row("Service", "CLI-S1")))

    empty = runner.invoke(cli.app, ["sources", "list"])
    assert empty.exit_code == 0, empty.output
    assert "No source systems are registered" in empty.output

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"gp-z9x": {"ods": "Z9X01", "kind": "pharmacy", "name": "X"}}))
    refused = runner.invoke(cli.app, ["sources", "load", str(bad)])
    assert refused.exit_code == 2
    assert "kind" in refused.output

    demo = tmp_path / "sources.json"
    demo.write_text(json.dumps(source_systems()))
    loaded = runner.invoke(cli.app, ["sources", "load", str(demo)])
    assert loaded.exit_code == 0, loaded.output
    assert "Registered hospital-z9h: Millbrook and District Hospitals NHS Trust" in loaded.output
    assert loaded.output.count("Registered ") == 10
    again = runner.invoke(cli.app, ["sources", "load", str(demo)])
    assert again.output.count("Replaced ") == 10

    listed = runner.invoke(cli.app, ["sources", "list"])
    assert listed.exit_code == 0, listed.output
    assert "social-care-z9c01" in listed.output
    assert "hospital-pas, integration" in listed.output
    assert "pharmacy" not in listed.output

    # With a registry in force, a command-line feed names its source, a registered one.
    unnamed = runner.invoke(cli.app, ["import-cld", str(extract_file)])
    assert unnamed.exit_code == 2
    assert "--source is required" in unnamed.output
    unknown = runner.invoke(cli.app, ["import-cld", str(extract_file), "--source", "Z9C99"])
    assert unknown.exit_code == 2
    assert "not a registered source system" in unknown.output
    wrong = runner.invoke(cli.app, ["import-cld", str(extract_file), "--source", "hospital-z9h"])
    assert wrong.exit_code == 1
    assert "is not this extract's source" in wrong.output
    named = runner.invoke(cli.app, ["import-cld", str(extract_file), "--source", "Z9C01"])
    assert named.exit_code == 0, named.output
    assert "1 events loaded or changed" in named.output
    with session_factory_for(engine).begin() as session:
        sources = session.scalars(
            select(ResourceRow.source).where(ResourceRow.resource_id.like("z9c01-%"))
        ).all()
    assert set(sources) == {"urn:carejoin:source:Z9C01"}

    ndjson = tmp_path / "load.ndjson"
    ndjson.write_text(json.dumps({"resourceType": "Patient", "id": "cli-bulk-1"}) + "\n")
    imported = runner.invoke(cli.app, ["import", str(ndjson), "--source", "gp-z90001"])
    assert imported.exit_code == 0, imported.output
    with session_factory_for(engine).begin() as session:
        source = session.scalar(
            select(ResourceRow.source).where(ResourceRow.resource_id == "cli-bulk-1")
        )
    assert source == "urn:carejoin:source:Z90001"


def test_an_mllp_listener_takes_only_its_sources_messages(engine: Engine) -> None:
    unit_of_work = unit_of_work_factory(session_factory_for(engine))

    async def exchange() -> list[str]:
        server = await mllp.serve(
            unit_of_work,
            host="127.0.0.1",
            port=0,
            base_url="http://test/fhir",
            scope=registered_scope("Z9H"),
        )
        port = server.sockets[0].getsockname()[1]
        acks: list[str] = []
        try:
            reader, writer = await open_hl7_connection("127.0.0.1", port)
            for raw in (
                adt("A01", "ML1", mrn="RH0000777", visit="V0777"),
                adt("A01", "ML2", mrn="RH0000778", visit="V0778").replace(
                    "|PAS|Z9H|", "|PAS|Z90001|"
                ),
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
    assert codes == ["AA", "AR"]
    with session_factory_for(engine).begin() as session:
        stored = session.execute(
            select(ResourceRow.resource_id, ResourceRow.source_org).where(
                ResourceRow.resource_id.in_(["z9h-rh0000777", "z90001-rh0000778"])
            )
        ).all()
    assert [tuple(r) for r in stored] == [("z9h-rh0000777", "Z9H")]
