"""The registry of source systems on both databases: its administration (privacy officers,
audited, bad input refused with the right status), and what it enforces on every write path
(registered clients attributed to their source, unregistered ones refused with nothing
written, no client writing as another source, re-sending changing nothing)."""

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, select

from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.feeds import bulk, registry, social_care
from fhir_gateway.feeds.models import Hl7Message
from fhir_gateway.feeds.sources import SourceSystem, SourceSystemError, parse_source_system
from fhir_gateway.record.summary import summarise
from fhir_gateway.store.models import ResourceRow
from tests.conftest import bearer, user_claims
from tests.factories import fhir
from tests.fhir_gateway.feeds.messages import adt
from tests.fhir_gateway.feeds.test_cld import extract, row

PATH = "/admin/source-systems"
HL7 = {"Content-Type": "x-application/hl7-v2+er7"}
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

HOSPITAL: dict[str, Any] = {
    "ods": "Z9H",
    "kind": "hospital",
    "name": "Millbrook and District Hospitals NHS Trust",
    "clients": ["hospital-pas", "integration"],
}
PRACTICE: dict[str, Any] = {
    "ods": "Z90001",
    "kind": "gp",
    "name": "Millbrook Surgery",
    "clients": ["integration", "millbrook-gp-system"],
}
COUNCIL: dict[str, Any] = {
    "ods": "Z9C01",
    "kind": "social-care",
    "name": "Millbrookshire Council Adult Social Care",
    "clients": ["integration"],
}
REGISTRY = {"hospital-z9h": HOSPITAL, "gp-z90001": PRACTICE, "social-care-z9c01": COUNCIL}


def officer(issuer: DevelopmentIssuer) -> dict[str, str]:
    return bearer(issuer, user_claims("privacy-1", organization="Z9H", role="CJ0003"))


def system(issuer: DevelopmentIssuer, client_id: str, **claims: Any) -> dict[str, str]:
    return bearer(
        issuer,
        {"sub": client_id, "client_id": client_id, "scope": "system/*.cruds", **claims},
    )


def register(client: TestClient, issuer: DevelopmentIssuer) -> None:
    response = client.put(PATH, json=REGISTRY, headers=officer(issuer))
    assert response.status_code == 200, response.text


def resources(connection: Connection) -> int:
    return int(connection.scalar(select(func.count()).select_from(ResourceRow)) or 0)


def audited(connection: Connection, interaction: str) -> int:
    return int(
        connection.scalar(
            select(func.count())
            .select_from(AuditEventRow)
            .where(AuditEventRow.interaction == interaction)
        )
        or 0
    )


def issue(response: Any) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return str(body["issue"][0]["diagnostics"])


# --- The registry as data ------------------------------------------------------------------


def test_a_source_system_is_checked_field_by_field() -> None:
    parsed = parse_source_system("hospital-z9h", HOSPITAL)
    assert parsed.uri == "urn:carejoin:source:Z9H"
    assert parsed.clients == ("hospital-pas", "integration")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "pharmacy"}, "kind"),
        ({"ods": "z9h"}, "ods"),
        ({"ods": "Z9"}, "ods"),
        ({"ods": "Z9H-1"}, "ods"),
        ({"name": " "}, "name"),
        ({"clients": "hospital-pas"}, "clients"),
        ({"clients": ["has space"]}, "clients"),
        ({"active": "yes"}, "active"),
        ({"colour": "blue"}, "colour"),
        ({"id": "another"}, "id"),
    ]
    for change, field in cases:
        with pytest.raises(SourceSystemError) as refused:
            parse_source_system("hospital-z9h", {**HOSPITAL, **change})
        assert refused.value.field == field
    with pytest.raises(SourceSystemError):
        parse_source_system("Not_An_Id", HOSPITAL)


def test_the_summary_names_each_registered_source() -> None:
    gp = SourceSystem("gp-z90001", "Z90001", "gp", "Millbrook Surgery")
    summary = summarise(
        [
            {**fhir.patient(id="a"), "meta": {"source": gp.uri, "lastUpdated": "2026-12-01"}},
            {
                **fhir.patient(id="b"),
                "meta": {"source": "urn:carejoin:source:Z9X", "lastUpdated": "2026-12-02"},
            },
        ],
        {"Z90001": gp},
    )
    assert summary["sources"] == [
        {
            "source": "urn:carejoin:source:Z90001",
            "lastSent": "2026-12-01",
            "organisation": "Z90001",
            "system": "gp-z90001",
            "name": "Millbrook Surgery",
            "kind": "gp",
        },
        {
            "source": "urn:carejoin:source:Z9X",
            "lastSent": "2026-12-02",
            "organisation": "Z9X",
            "system": None,
            "name": None,
            "kind": None,
        },
    ]


# --- Administration ------------------------------------------------------------------------


def test_privacy_officers_register_read_and_change_source_systems(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    headers = officer(issuer)
    empty = client.get(PATH, headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"enforced": False, "sourceSystems": []}

    created = client.put(f"{PATH}/hospital-z9h", json=HOSPITAL, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == "hospital-z9h"
    assert body["source"] == "urn:carejoin:source:Z9H"
    assert body["clients"] == ["hospital-pas", "integration"]
    assert body["active"] is True
    assert body["updatedBy"] == "Practitioner/privacy-1"

    changed = client.put(
        f"{PATH}/hospital-z9h",
        json={**HOSPITAL, "clients": ["hospital-epr", "hospital-pas"]},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["clients"] == ["hospital-epr", "hospital-pas"]
    assert changed.json()["created"] == body["created"]

    one = client.get(f"{PATH}/hospital-z9h", headers=headers)
    assert one.status_code == 200
    assert one.json()["clients"] == ["hospital-epr", "hospital-pas"]
    listed = client.get(PATH, headers=headers).json()
    assert listed["enforced"] is True
    assert [s["id"] for s in listed["sourceSystems"]] == ["hospital-z9h"]

    many = client.put(PATH, json=[{"id": "gp-z90001", **PRACTICE}], headers=headers)
    assert many.status_code == 200, many.text
    assert many.json()["registered"] == ["gp-z90001"]
    assert [s["id"] for s in client.get(PATH, headers=headers).json()["sourceSystems"]] == [
        "gp-z90001",
        "hospital-z9h",
    ]

    # Two systems trade ODS codes in one change.
    swapped = client.put(
        PATH,
        json={
            "gp-z90001": {**PRACTICE, "ods": "Z9H"},
            "hospital-z9h": {**HOSPITAL, "ods": "Z90001"},
        },
        headers=headers,
    )
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["replaced"] == ["gp-z90001", "hospital-z9h"]
    assert client.get(f"{PATH}/hospital-z9h", headers=headers).json()["ods"] == "Z90001"

    assert audited(connection, "source-system-put") == 5
    assert audited(connection, "source-systems-read") == 3
    assert audited(connection, "source-system-read") == 2


def test_bad_input_is_refused_with_the_right_status(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    headers = officer(issuer)
    assert client.put(f"{PATH}/hospital-z9h", json=HOSPITAL, headers=headers).status_code == 201

    missing = client.get(f"{PATH}/nowhere", headers=headers)
    assert missing.status_code == 404
    assert "nowhere" in issue(missing)

    kind = client.put(f"{PATH}/gp-z90001", json={**PRACTICE, "kind": "pharmacy"}, headers=headers)
    assert kind.status_code == 422
    assert "kind" in issue(kind)
    assert kind.json()["issue"][0]["expression"] == ["kind"]

    ods = client.put(f"{PATH}/gp-z90001", json={**PRACTICE, "ods": "z9-0001"}, headers=headers)
    assert ods.status_code == 422
    assert "ODS code" in issue(ods)

    duplicate = client.put(f"{PATH}/hospital-two", json=HOSPITAL, headers=headers)
    assert duplicate.status_code == 409
    assert "hospital-z9h" in issue(duplicate)
    twice = client.put(
        PATH, json=[{"id": "a-z9x", **PRACTICE}, {"id": "b-z9x", **PRACTICE}], headers=headers
    )
    assert twice.status_code == 409

    not_json = client.put(
        f"{PATH}/gp-z90001", content=b"{not json", headers={**headers, "Content-Type": "x"}
    )
    assert not_json.status_code == 400
    not_object = client.put(f"{PATH}/gp-z90001", json=["Z90001"], headers=headers)
    assert not_object.status_code == 400
    bad_id = client.put(f"{PATH}/GP_Z90001", json=PRACTICE, headers=headers)
    assert bad_id.status_code == 422

    # Nothing of the refused requests was registered; the first system is as it was.
    listed = client.get(PATH, headers=headers).json()["sourceSystems"]
    assert [(s["id"], s["ods"], s["kind"]) for s in listed] == [("hospital-z9h", "Z9H", "hospital")]
    assert audited(connection, "source-system-put") == 1


def test_only_privacy_officers_administer_the_registry(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    gp = bearer(issuer, user_claims("gp-Z90001-0"))
    admin = bearer(issuer, user_claims("admin-1", organization="Z9C01", role="R8008"))
    pas = system(issuer, "hospital-pas", organization="Z9H")
    for headers in (gp, admin, pas):
        assert client.get(PATH, headers=headers).status_code == 403
        refused = client.put(f"{PATH}/hospital-z9h", json=HOSPITAL, headers=headers)
        assert refused.status_code == 403
        assert issue(refused)
    unsigned = client.get(PATH, headers={"Authorization": ""})
    assert unsigned.status_code == 401
    assert client.get(PATH, headers=officer(issuer)).json()["sourceSystems"] == []


# --- Enforcement on write ------------------------------------------------------------------


def test_an_unregistered_client_is_refused_and_nothing_is_written(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    register(client, issuer)
    before = resources(connection)
    rogue = system(issuer, "rogue-system", organization="Z9H")
    patient = fhir.patient(id="rogue-p1", meta={"source": "urn:carejoin:source:Z9H"})
    attempts = [
        client.post("/fhir/Patient", json=patient, headers=rogue),
        client.put("/fhir/Patient/rogue-p1", json=patient, headers=rogue),
        client.put("/fhir/Patient?identifier=urn:x|1", json=patient, headers=rogue),
        client.post("/fhir", json=fhir.transaction(fhir.put_entry(patient)), headers=rogue),
        client.post(
            "/fhir", json=fhir.transaction(fhir.put_entry(patient), kind="batch"), headers=rogue
        ),
        client.delete("/fhir/Patient/rogue-p1", headers=rogue),
        client.post("/feeds/hl7v2", content=adt("A01", "R1").encode(), headers={**rogue, **HL7}),
    ]
    for response in attempts:
        assert response.status_code == 403, response.text
        assert "not registered" in issue(response)
    assert resources(connection) == before
    assert connection.scalar(select(func.count()).select_from(Hl7Message)) == 0
    # It may still read (what the agreement lets it see).
    assert client.get("/fhir/Patient", headers=rogue).status_code == 200
    form = {**rogue, "Content-Type": "application/x-www-form-urlencoded"}
    searched = client.post("/fhir/Patient/_search", content=b"family=x", headers=form)
    assert searched.status_code == 200, searched.text
    # A deactivated source system's clients are refused alike.
    headers = officer(issuer)
    off = client.put(f"{PATH}/hospital-z9h", json={**HOSPITAL, "active": False}, headers=headers)
    assert off.status_code == 200
    pas = system(issuer, "hospital-pas", organization="Z9H")
    assert client.post("/fhir/Patient", json=fhir.patient(), headers=pas).status_code == 403
    assert resources(connection) == before


def test_an_empty_registry_in_development_leaves_system_clients_as_they_were(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    # No source system registered: the test suite's own system client writes as before.
    created = client.post("/fhir/Patient", json=fhir.patient())
    assert created.status_code == 201, created.text


def test_production_enforces_an_empty_registry(
    app: FastAPI, client: TestClient, issuer: DevelopmentIssuer
) -> None:
    app.state.source_systems.always_enforced = True
    app.state.source_systems.forget()
    refused = client.post("/fhir/Patient", json=fhir.patient())
    assert refused.status_code == 403
    assert "not registered" in issue(refused)
    assert client.get(PATH, headers=officer(issuer)).json()["enforced"] is True


def test_everything_a_registered_client_sends_is_attributed_to_its_source(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    register(client, issuer)
    # Its token claims the GP practice: the registry, not the token, says whom it sends as.
    pas = system(issuer, "hospital-pas", organization="Z90001")
    patient = fhir.patient(id="z9h-rh1", family="Attributed")
    bundle = fhir.transaction(
        fhir.put_entry(patient),
        fhir.put_entry(fhir.observation(patient_id="z9h-rh1", id="z9h-obs1")),
        fhir.put_entry(fhir.condition(patient_id="z9h-rh1", id="z9h-cond1")),
    )
    sent = client.post("/fhir", json=bundle, headers=pas)
    assert sent.status_code == 200, sent.text
    for kind, resource_id in [
        ("Patient", "z9h-rh1"),
        ("Observation", "z9h-obs1"),
        ("Condition", "z9h-cond1"),
    ]:
        stored = client.get(f"/fhir/{kind}/{resource_id}").json()
        assert stored["meta"]["source"] == "urn:carejoin:source:Z9H"
        assert "identifier" in stored or kind != "Patient"  # kept as sent
    labels = connection.execute(
        select(ResourceRow.source_org).where(ResourceRow.resource_id.like("z9h-%"))
    ).scalars()
    assert set(labels) == {"Z9H"}

    # It cannot write as another source's organisation, nor touch another source's record.
    before = resources(connection)
    as_gp = fhir.patient(id="z9h-rh2", meta={"source": "urn:carejoin:source:Z90001"})
    refused = client.put("/fhir/Patient/z9h-rh2", json=as_gp, headers=pas)
    assert refused.status_code == 403
    whole = client.post(
        "/fhir",
        json=fhir.transaction(fhir.put_entry(fhir.patient(id="z9h-rh3")), fhir.put_entry(as_gp)),
        headers=pas,
    )
    assert whole.status_code == 403
    assert resources(connection) == before
    integration = system(issuer, "integration")
    practice_patient = fhir.patient(id="gp1-p1", meta={"source": "urn:carejoin:source:Z90001"})
    assert (
        client.put("/fhir/Patient/gp1-p1", json=practice_patient, headers=integration).status_code
        == 201
    )
    overwrite = client.put("/fhir/Patient/gp1-p1", json=fhir.patient(id="gp1-p1"), headers=pas)
    assert overwrite.status_code == 404
    assert client.get("/fhir/Patient/gp1-p1").json()["meta"]["versionId"] == "1"


def test_a_client_sending_for_several_sources_names_one(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    register(client, issuer)
    integration = system(issuer, "integration")
    unnamed = client.post("/fhir/Patient", json=fhir.patient(), headers=integration)
    assert unnamed.status_code == 403
    elsewhere = client.post(
        "/fhir/Patient",
        json=fhir.patient(meta={"source": "urn:carejoin:source:Z9X"}),
        headers=integration,
    )
    assert elsewhere.status_code == 403
    for ods in ("Z90001", "Z9H", "Z9C01"):
        named = client.post(
            "/fhir/Patient",
            json=fhir.patient(meta={"source": f"urn:carejoin:source:{ods}"}),
            headers=integration,
        )
        assert named.status_code == 201, named.text
        assert named.json()["meta"]["source"] == f"urn:carejoin:source:{ods}"


def test_re_sending_changes_nothing_and_local_ids_never_collide(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    register(client, issuer)
    pas = system(issuer, "hospital-pas")
    gp = system(issuer, "millbrook-gp-system")
    # Both sources call their patient 12345 in the same local identifier system.
    local = "https://fhir.example/Id/local-patient"

    def upsert(headers: dict[str, str], family: str) -> dict[str, Any]:
        patient = fhir.patient(family=family, identifier=[{"system": local, "value": "12345"}])
        response = client.put(
            f"/fhir/Patient?identifier={local}|12345", json=patient, headers=headers
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    hospital_first, gp_first = upsert(pas, "Hospital"), upsert(gp, "Practice")
    assert hospital_first["id"] != gp_first["id"]
    assert hospital_first["meta"]["source"] == "urn:carejoin:source:Z9H"
    assert gp_first["meta"]["source"] == "urn:carejoin:source:Z90001"
    count = resources(connection)
    hospital_again, gp_again = upsert(pas, "Hospital"), upsert(gp, "Practice")
    assert (hospital_again["id"], hospital_again["meta"]["versionId"]) == (
        hospital_first["id"],
        "1",
    )
    assert (gp_again["id"], gp_again["meta"]["versionId"]) == (gp_first["id"], "1")
    assert resources(connection) == count

    bundle = fhir.transaction(
        fhir.put_entry(fhir.patient(id="z9h-resend")),
        fhir.put_entry(fhir.observation(patient_id="z9h-resend", id="z9h-resend-o")),
    )
    first = client.post("/fhir", json=bundle, headers=pas)
    again = client.post("/fhir", json=bundle, headers=pas)
    assert first.status_code == again.status_code == 200
    versions = [e["response"]["etag"] for e in again.json()["entry"]]
    assert versions == ['W/"1"', 'W/"1"']


def test_hl7_over_http_is_attributed_and_checked_against_the_sender(
    client: TestClient, issuer: DevelopmentIssuer, connection: Connection
) -> None:
    register(client, issuer)
    pas = {**system(issuer, "hospital-pas", scope="system/Patient.cru system/Encounter.cru"), **HL7}
    applied = client.post("/feeds/hl7v2", content=adt("A01", "H1").encode(), headers=pas)
    assert applied.headers["X-HL7-Ack"] == "AA", applied.text
    stored = connection.execute(
        select(ResourceRow.source_org).where(
            ResourceRow.resource_type.in_(["Patient", "Encounter"])
        )
    ).scalars()
    assert set(stored) == {"Z9H"}
    before = resources(connection)
    as_gp = adt("A01", "H2", visit="V0002").replace("|PAS|Z9H|", "|PAS|Z90001|")
    refused = client.post("/feeds/hl7v2", content=as_gp.encode(), headers=pas)
    assert refused.headers["X-HL7-Ack"] == "AR"
    assert "Z90001" in refused.text
    assert resources(connection) == before
    resent = client.post("/feeds/hl7v2", content=adt("A01", "H1").encode(), headers=pas)
    assert resent.headers["X-HL7-Ack"] == "AA"
    assert resources(connection) == before

    # Dead letters are seen and replayed by their own source only.
    gp = system(issuer, "millbrook-gp-system", scope="system/Patient.cru system/Encounter.cru")
    (letter,) = client.get("/feeds/hl7v2/dead-letters", headers=gp).json()["deadLetters"]
    assert letter["sender"] == "Z90001"
    assert client.get("/feeds/hl7v2/dead-letters", headers=pas).json()["deadLetters"] == []
    replay = client.post(f"/feeds/hl7v2/dead-letters/{letter['id']}/replay", headers=pas)
    assert replay.status_code == 404


def test_the_summary_shows_each_source_by_its_registered_name(
    client: TestClient, issuer: DevelopmentIssuer
) -> None:
    register(client, issuer)
    pas = system(issuer, "hospital-pas")
    patient = fhir.patient(id="z9h-summary")
    sent = client.post(
        "/fhir",
        json=fhir.transaction(
            fhir.put_entry(patient),
            fhir.put_entry(fhir.condition(patient_id="z9h-summary", id="z9h-summary-c")),
        ),
        headers=pas,
    )
    assert sent.status_code == 200, sent.text
    summary = client.get("/record/z9h-summary")
    assert summary.status_code == 200, summary.text
    (source,) = summary.json()["sources"]
    assert source["source"] == "urn:carejoin:source:Z9H"
    assert source["name"] == HOSPITAL["name"]
    assert source["kind"] == "hospital"
    assert source["system"] == "hospital-z9h"
    assert source["lastSent"]


# --- Command-line feeds name their source --------------------------------------------------

COUNCIL_SYSTEM = SourceSystem(
    "social-care-z9c01", "Z9C01", "social-care", "Millbrookshire Council Adult Social Care"
)


def test_a_social_care_extract_loads_only_its_sources_rows(
    app: FastAPI, client: TestClient, connection: Connection
) -> None:
    other = row("Service", "S9").replace("Z9C01,", "Z9C02,", 1)
    text = extract(row("Service", "S1"), other)
    report = social_care.load(app.state.unit_of_work, text, now=NOW, source=COUNCIL_SYSTEM)
    assert report.loaded == 1
    assert [(n, "Z9C02" in reason) for n, reason in report.errors] == [(3, True)]
    assert client.get("/fhir/EpisodeOfCare/z9c02-ev-s9").status_code == 404
    stored = client.get("/fhir/EpisodeOfCare/z9c01-ev-s1").json()
    assert stored["meta"]["source"] == "urn:carejoin:source:Z9C01"
    again = social_care.load(app.state.unit_of_work, text, now=NOW, source=COUNCIL_SYSTEM)
    assert (again.loaded, again.unchanged) == (0, 1)

    # Another council's extract named as this source loads nothing.
    count = resources(connection)
    wrong = SourceSystem("social-care-z9c02", "Z9C02", "social-care", "Another council")
    refused = social_care.load(
        app.state.unit_of_work, extract(row("Review", "V1")), now=NOW, source=wrong
    )
    assert refused.loaded == 0
    assert len(refused.errors) == 1
    assert resources(connection) == count


def test_a_bulk_import_is_attributed_to_its_source(
    app: FastAPI, client: TestClient, connection: Connection
) -> None:
    lines = [
        fhir.patient(id="bulk-src-p1"),
        fhir.observation(patient_id="bulk-src-p1", id="bulk-src-o1"),
        fhir.patient(id="bulk-src-p2", meta={"source": "urn:carejoin:source:Z9H"}),
    ]
    import json

    text = [json.dumps(r) for r in lines]
    report = bulk.import_ndjson(app.state.unit_of_work, text, now=NOW, source=COUNCIL_SYSTEM)
    assert dict(report.created) == {"Patient": 1, "Observation": 1}
    assert [n for n, _reason in report.errors] == [3]
    assert "is not this import's source" in report.errors[0][1]
    for path in ("Patient/bulk-src-p1", "Observation/bulk-src-o1"):
        assert client.get(f"/fhir/{path}").json()["meta"]["source"] == "urn:carejoin:source:Z9C01"
    again = bulk.import_ndjson(app.state.unit_of_work, text[:2], now=NOW, source=COUNCIL_SYSTEM)
    assert dict(again.unchanged) == {"Patient": 1, "Observation": 1}
    # Another source's record is not the council's to change.
    hospital = SourceSystem("hospital-z9h", "Z9H", "hospital", "Hospital")
    count = resources(connection)
    changed = fhir.patient(id="bulk-src-p1", family="Changed")
    refused = bulk.import_ndjson(
        app.state.unit_of_work, [json.dumps(changed)], now=NOW, source=hospital
    )
    assert "another source's record" in refused.errors[0][1]
    assert resources(connection) == count
    assert client.get("/fhir/Patient/bulk-src-p1").json()["meta"]["versionId"] == "1"


def test_registry_snapshot_is_reread_after_a_change(
    app: FastAPI, client: TestClient, issuer: DevelopmentIssuer
) -> None:
    store = app.state.source_systems
    assert not store.current(app.state.unit_of_work).enforced
    register(client, issuer)
    known = store.current(app.state.unit_of_work)
    assert known.enforced
    assert [s.id for s in known.for_client("integration")] == [
        "gp-z90001",
        "hospital-z9h",
        "social-care-z9c01",
    ]
    with app.state.unit_of_work() as session:
        assert registry.get_system(session, "gp-z90001") is not None
