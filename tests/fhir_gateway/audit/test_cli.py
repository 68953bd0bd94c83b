"""``carejoin audit seal`` and ``carejoin audit verify`` against a database of their own (they
commit, and the audit trail cannot be cleaned up afterwards)."""

from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from carejoin import cli
from carejoin.settings import Settings
from fhir_gateway import migrate
from fhir_gateway.db import create_engine_for, session_factory_for
from tests.fhir_gateway.audit.records import add, record


def test_seal_then_verify_then_tamper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(database_url=url))
    engine = create_engine_for(url)
    migrate.upgrade(engine)
    factory = session_factory_for(engine)
    runner = CliRunner()
    try:
        with factory.begin() as session:
            add(session, record(detail="one"), record(detail="two"))

        sealed = runner.invoke(cli.app, ["audit", "seal"])
        assert sealed.exit_code == 0, sealed.output
        assert "Sealed 1 block(s): 1" in sealed.output
        again = runner.invoke(cli.app, ["audit", "seal"])
        assert "Nothing to seal" in again.output

        with factory.begin() as session:
            add(session, record(detail="waiting"))
        verified = runner.invoke(cli.app, ["audit", "verify"])
        assert verified.exit_code == 0, verified.output
        assert "Checked 1 block(s) holding 2 audit event(s)." in verified.output
        assert "Latest block 1: hash " in verified.output
        assert "warning: 1 audit event(s) are not sealed yet; the oldest is" in verified.output
        assert "The audit trail is intact." in verified.output

        # Someone with the database owner's rights drops the guard and rewrites an event.
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER audit_event_no_update"))
            connection.execute(
                text("UPDATE audit_event SET detail = 'edited' WHERE detail = 'one'")
            )
        tampered = runner.invoke(cli.app, ["audit", "verify"])
        assert tampered.exit_code == 1
        assert "BROKEN block 1: its hash does not match its events" in tampered.output
        assert "NOT intact" in tampered.output
    finally:
        engine.dispose()
