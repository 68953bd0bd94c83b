"""Bulk NDJSON import on both databases: good lines load, bad lines are reported by number,
re-importing changes nothing."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from carejoin.cli import app as cli
from fhir_gateway.feeds import bulk
from tests.factories import fhir

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def lines(*resources: Any) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r) for r in resources]


def test_import_loads_good_lines_and_reports_bad_ones(app: FastAPI, client: TestClient) -> None:
    patient = fhir.patient(id="bulk-p1", family="Bulkload")
    observation = fhir.observation(patient_id="bulk-p1", id="bulk-o1")
    source = lines(
        patient,
        observation,
        "",
        "{not json",
        {"resourceType": "Patient", "id": "bulk-bad", "gender": "sometimes"},
        {"resourceType": "Spaceship", "id": "x"},
        fhir.condition(patient_id="bulk-p1", id="bulk-c1"),
    )
    report = bulk.import_ndjson(app.state.unit_of_work, source, now=NOW, batch_size=2)
    assert dict(report.created) == {"Patient": 1, "Observation": 1, "Condition": 1}
    assert [n for n, _reason in report.errors] == [4, 5, 6]
    assert "gender" in report.errors[1][1]
    assert "Spaceship" in report.errors[2][1]
    # Loaded resources are indexed like any other write.
    found = client.get("/fhir/Observation", params={"patient": "bulk-p1"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["bulk-o1"]
    assert client.get("/fhir/Patient/bulk-bad").status_code == 404


def test_reimport_changes_nothing_and_changes_update(app: FastAPI, client: TestClient) -> None:
    source = lines(fhir.patient(id="bulk-p2"), fhir.observation(patient_id="bulk-p2", id="bulk-o2"))
    bulk.import_ndjson(app.state.unit_of_work, source, now=NOW)
    again = bulk.import_ndjson(app.state.unit_of_work, source, now=NOW)
    assert again.loaded == 0
    assert sum(again.unchanged.values()) == 2
    assert client.get("/fhir/Patient/bulk-p2").json()["meta"]["versionId"] == "1"
    changed = lines(fhir.patient(id="bulk-p2", gender="male"))
    report = bulk.import_ndjson(app.state.unit_of_work, changed, now=NOW)
    assert dict(report.updated) == {"Patient": 1}
    assert client.get("/fhir/Patient/bulk-p2").json()["meta"]["versionId"] == "2"


def test_the_same_resource_twice_in_a_file_is_applied_in_order(
    app: FastAPI, client: TestClient
) -> None:
    source = lines(fhir.patient(id="bulk-p3"), fhir.patient(id="bulk-p3", gender="male"))
    report = bulk.import_ndjson(app.state.unit_of_work, source, now=NOW)
    assert report.loaded == 2
    body = client.get("/fhir/Patient/bulk-p3").json()
    assert body["gender"] == "male"
    assert body["meta"]["versionId"] == "2"


def test_the_import_command(tmp_path: Path, monkeypatch: Any) -> None:
    database = tmp_path / "import.db"
    monkeypatch.setenv("CAREJOIN_DATABASE_URL", f"sqlite:///{database}")
    from carejoin.settings import get_settings

    get_settings.cache_clear()
    try:
        good = tmp_path / "good.ndjson"
        good.write_text("\n".join(lines(fhir.patient(id="cli-p1"), fhir.patient(id="cli-p2"))))
        result = CliRunner().invoke(cli, ["import", str(good)])
        assert result.exit_code == 0, result.output
        assert "2 created" in result.output
        again = CliRunner().invoke(cli, ["import", str(good)])
        assert "2 unchanged" in again.output
        bad = tmp_path / "bad.ndjson"
        bad.write_bytes(json.dumps(fhir.patient(id="cli-p3")).encode() + b"\n\xff\xfe\n")
        failed = CliRunner().invoke(cli, ["import", str(bad)])
        assert failed.exit_code == 1
        assert "line 2" in failed.output
        assert "1 created" in failed.output
    finally:
        get_settings.cache_clear()


def test_a_parallel_import_matches_a_serial_one(tmp_path: Path) -> None:
    """Worker processes commit, so this runs on a database of its own (both backends)."""
    from tests.conftest import _postgres_engine, _sqlite_engine

    resources = [fhir.patient(id=f"par-p{i}") for i in range(6)]
    resources += [fhir.observation(patient_id=f"par-p{i}", id=f"par-o{i}") for i in range(6)]
    source = tmp_path / "parallel.ndjson"
    resources_male = fhir.patient(id="par-p0", gender="male")
    text = lines(*resources, "[1, 2]", resources_male)
    source.write_text("\n".join(text) + "\n")
    for make in (_sqlite_engine(tmp_path), _postgres_engine()):
        with make as engine:
            url = engine.url.render_as_string(hide_password=False)
            report = bulk.import_file(url, str(source), now=NOW, processes=2, batch_size=3)
            assert dict(report.created) == {"Patient": 6, "Observation": 6}
            assert dict(report.updated) == {"Patient": 1}
            assert [n for n, _r in report.errors] == [13]
            # Importing the resources' current state again changes nothing.
            current = tmp_path / "current.ndjson"
            current.write_text("\n".join(lines(*resources[1:], resources_male)))
            again = bulk.import_file(url, str(current), now=NOW, processes=2)
            assert again.loaded == 0
            assert sum(again.unchanged.values()) == 12


def test_refused_lines_are_reported_in_line_order(app: FastAPI) -> None:
    """A resource that fails validation (found when its batch is written) and a later line
    that is not JSON (found when read) are reported in the file's order."""
    source = lines(
        fhir.patient(id="order-p1"),
        {"resourceType": "Observation", "id": "order-o1", "status": "final"},  # no code
        "not json",
    )
    report = bulk.import_ndjson(app.state.unit_of_work, source, now=NOW)
    assert [n for n, _reason in report.errors] == [2, 3]
    assert "code" in report.errors[0][1]


def test_an_import_collects_cycles_less_often_and_restores_the_setting(app: FastAPI) -> None:
    import gc

    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []
    source = lines(fhir.patient(id="bulk-gc"), "{not json")
    report = bulk.import_ndjson(
        app.state.unit_of_work,
        source,
        now=NOW,
        progress=lambda _n: during.append(gc.get_threshold()),
    )
    assert report.loaded == 1
    assert during == [bulk.IMPORT_GC_THRESHOLD]
    assert gc.get_threshold() == before
    assert before != bulk.IMPORT_GC_THRESHOLD


def test_a_worker_process_keeps_its_element_memo_from_one_shard_to_the_next(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The shards one worker process imports share the elements it has validated (the same
    people, codes and categories); each shard still loads whole. (That the memo never changes
    a verdict is `test_validation_memo`'s.)"""
    from tests.conftest import _sqlite_engine

    monkeypatch.setattr(bulk, "_worker_memo", None)
    first = [
        fhir.observation(patient_id="memo-p1", code="271649006", id=f"memo-a{i}") for i in range(3)
    ]
    second = [
        fhir.observation(patient_id="memo-p1", code="271649006", id=f"memo-b{i}") for i in range(3)
    ]
    shards = []
    for name, resources in (("one", first), ("two", second)):
        shard = tmp_path / f"{name}.ndjson"
        shard.write_text("".join(f"{n}\t{line}\n" for n, line in enumerate(lines(*resources), 1)))
        shards.append(shard)
    with _sqlite_engine(tmp_path) as engine:
        url = engine.url.render_as_string(hide_password=False)
        now = NOW.isoformat()
        report = bulk._shard_worker((url, str(shards[0]), 100, now, None))
        memo = bulk._worker_memo
        assert memo is not None
        assert report.loaded == 3
        misses_after_first = memo.misses
        report = bulk._shard_worker((url, str(shards[1]), 100, now, None))
        assert bulk._worker_memo is memo
        assert report.loaded == 3
        # The second shard's subject and code were validated in the first.
        assert memo.misses == misses_after_first
        assert memo.hits >= 2 * len(second)
