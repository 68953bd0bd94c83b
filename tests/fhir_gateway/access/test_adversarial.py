"""Adversarial tests of consent enforcement over HTTP, on both databases.

Each test builds the synthetic world of ``adversarial_world`` (one person with GP, hospital
and council records joined by identity, and an unrelated person at another practice), then
probes one path as a caller who must not see something, and asserts what must *not* be
there: not in the body, not in ``Bundle.total``, not in a paging link, not in an include,
not in a history entry, and not in the shape of an error. Anything hidden answers exactly as
a resource that does not exist.

When a new leak is found, its test is written first, marked ``xfail(strict=True)`` with the
defect as the reason, and the mark is removed with the fix (a strict xfail that passes fails
the run, so a fixed leak cannot go unnoticed).
"""

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select, text

from consent.audit import Outcome
from fhir_gateway.audit.models import AuditEventRow
from fhir_gateway.auth.issuer import DevelopmentIssuer
from fhir_gateway.identity import nhs
from tests.conftest import SYSTEM_CLAIMS, bearer, user_claims
from tests.fhir_gateway.access.adversarial_world import (
    COUNCIL,
    GP,
    GP_OTHER,
    GP_USER,
    HOSPITAL,
    HOSPITAL_OTHER_USER,
    HOSPITAL_USER,
    ICD10,
    NOT_A_PARTY,
    NUMBER_A,
    NUMBER_B,
    SNOMED,
    SOCIAL_WORKER_USER,
    SOURCE,
    WORLD,
    Callers,
    Headers,
    World,
    build_world,
    callers,
    care_team,
    condition,
    dispatch,
    encounter,
    episode_of_care,
    patient,
    permit_exception,
    privacy_consent,
    put_all,
    refs,
    withheld_notices,
    world_resources,
)

BASE = "http://testserver"


@pytest.fixture
def world(app: FastAPI, client: TestClient) -> World:
    return build_world(app, client)


@pytest.fixture
def who(issuer: DevelopmentIssuer) -> Callers:
    return callers(issuer)


# -- helpers ---------------------------------------------------------------------------------


def get(client: TestClient, url: str, headers: Headers, **params: str) -> Any:
    return client.get(url.removeprefix(BASE), params=params or None, headers=headers)


def search(client: TestClient, headers: Headers, resource_type: str, **params: str) -> Any:
    response = get(client, f"/fhir/{resource_type}", headers, **params)
    assert response.status_code == 200, response.text
    return response.json()


def all_pages(client: TestClient, headers: Headers, url: str, **params: str) -> list[str]:
    """Every entry of a search, following next links."""
    found: list[str] = []
    response = get(client, url, headers, **params)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        found += refs(bundle)
        following = next_link(bundle)
        if following is None:
            return found
        response = get(client, following, headers)


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)


def visible_to(client: TestClient, headers: Headers) -> set[str]:
    """Everything ``headers`` finds by searching the clinical types the world holds."""
    seen: set[str] = set()
    for resource_type in ("Patient", "Condition", "Observation", "Encounter", "CarePlan"):
        seen |= set(all_pages(client, headers, f"/fhir/{resource_type}", _count="50"))
    return seen


def status_of(client: TestClient, headers: Headers, reference: str) -> int:
    return int(get(client, f"/fhir/{reference}", headers).status_code)


def assert_not_found_like_missing(response: Any, missing: Any, hidden_id: str) -> None:
    """``response`` (for something hidden) is indistinguishable from ``missing`` (for an id
    that never existed): status, headers that matter, and the OperationOutcome's shape."""
    assert response.status_code == missing.status_code == 404
    for header in ("etag", "last-modified", "location", "content-location"):
        assert header not in response.headers
    assert response.headers["content-type"] == missing.headers["content-type"]
    hidden, absent = response.json(), missing.json()
    assert hidden["resourceType"] == absent["resourceType"] == "OperationOutcome"
    assert set(hidden) == set(absent)
    [hidden_issue] = hidden["issue"]
    [absent_issue] = absent["issue"]
    assert hidden_issue["code"] == absent_issue["code"] == "not-found"
    assert hidden_issue["severity"] == absent_issue["severity"]
    assert set(hidden_issue) == set(absent_issue)
    missing_id = re.search(r"/([A-Za-z0-9\-.]+)", absent_issue["diagnostics"])
    assert missing_id is not None
    assert hidden_issue["diagnostics"] == absent_issue["diagnostics"].replace(
        missing_id.group(1), hidden_id
    )


def body_text(response: Any) -> str:
    return str(response.text)


# What hidden clinical content looks like in a body: codes and displays of the hidden items.
HIV_MARKERS = ("B20", "HIV", "adv-h-hiv")
SAFEGUARDING_MARKERS = ("T74.1", "Physical abuse", "adv-h-safeguarding")


def assert_no_markers(text: str, *markers: str) -> None:
    for marker in markers:
        assert marker not in text, f"{marker!r} leaked"


def audit_rows(connection: Connection, **where: str) -> list[Any]:
    """``audit_event`` rows matching ``where`` (column = value), oldest first."""
    table = AuditEventRow.__table__
    stmt = select(table).order_by(table.c.pk)
    for column, value in where.items():
        stmt = stmt.where(table.c[column] == value)
    return list(connection.execute(stmt).all())


def open_encounter(reference: str, ods: str, patient_id: str) -> dict[str, Any]:
    return encounter(reference, ods, patient_id, status="in-progress", start="2026-01-01T08:00:00Z")


# -- read and vread ----------------------------------------------------------------------------


def test_hidden_read_is_indistinguishable_from_a_missing_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    # The GP is related (registered), but HIV is named by no rule.
    hidden = get(client, f"/fhir/{world.hospital_hiv}", who.gp)
    missing = get(client, "/fhir/Condition/adv-never-existed", who.gp)
    assert_not_found_like_missing(hidden, missing, "adv-h-hiv")
    assert_no_markers(body_text(hidden), "B20", "HIV", "Z9H")
    # Positive control: the ordinary hospital condition of the same person is shared.
    assert status_of(client, who.gp, world.hospital_fracture) == 200


def test_hidden_read_with_summary_or_elements_is_still_404(
    client: TestClient, world: World, who: Callers
) -> None:
    for params in ({"_summary": "true"}, {"_elements": "id"}, {"_summary": "count"}):
        response = get(client, f"/fhir/{world.hospital_hiv}", who.gp, **params)
        assert response.status_code == 404, params
        assert_no_markers(body_text(response), "B20", "HIV")


def test_hidden_vread_and_wrong_version_answer_alike(
    client: TestClient, world: World, who: Callers
) -> None:
    missing = get(client, "/fhir/Condition/adv-never-existed/_history/1", who.gp)
    hidden = get(client, f"/fhir/{world.hospital_hiv}/_history/1", who.gp)
    assert_not_found_like_missing(hidden, missing, "adv-h-hiv")
    # A version that does not exist of a visible resource answers the same way...
    wrong = get(client, f"/fhir/{world.hospital_fracture}/_history/9", who.gp)
    missing_9 = get(client, "/fhir/Condition/adv-never-existed/_history/9", who.gp)
    assert_not_found_like_missing(wrong, missing_9, "adv-h-fracture")
    # ...and so does a hidden resource asked for at a version it does not have.
    hidden_9 = get(client, f"/fhir/{world.hospital_hiv}/_history/9", who.gp)
    assert_not_found_like_missing(hidden_9, missing_9, "adv-h-hiv")


def test_deleted_and_hidden_is_404_not_410(client: TestClient, world: World, who: Callers) -> None:
    for reference in (world.hospital_hiv, world.hospital_fracture):
        assert client.delete(f"/fhir/{reference}").status_code == 204
    # The related GP may see the fracture, so learns it was deleted; HIV stays unknown.
    assert status_of(client, who.gp, world.hospital_fracture) == 410
    missing = get(client, "/fhir/Condition/adv-never-existed", who.gp)
    assert_not_found_like_missing(
        get(client, f"/fhir/{world.hospital_hiv}", who.gp), missing, "adv-h-hiv"
    )
    # Nor do its versions or history give it away.
    assert status_of(client, who.gp, f"{world.hospital_hiv}/_history/1") == 404
    assert status_of(client, who.gp, f"{world.hospital_hiv}/_history/2") == 404
    assert status_of(client, who.gp, f"{world.hospital_hiv}/_history") == 404
    # The social worker has no relationship: even the deleted fracture is unknown to them.
    assert status_of(client, who.social_worker, world.hospital_fracture) == 404


# -- search: totals, counts, POST, modifiers, sorting ----------------------------------------


def test_search_totals_never_count_hidden_resources(
    client: TestClient, world: World, who: Callers
) -> None:
    of_hospital = {"patient": f"Patient/{world.hospital_patient}"}
    accurate = search(client, who.gp, "Condition", _total="accurate", **of_hospital)
    assert accurate["total"] == 2
    assert sorted(refs(accurate)) == sorted([world.hospital_depression, world.hospital_fracture])
    counted = search(client, who.gp, "Condition", _summary="count", **of_hospital)
    assert counted["total"] == 2
    assert refs(counted) == []
    # Searching for the hidden value itself finds nothing, and says so.
    for params in (
        {"code": f"{ICD10}|B20", "_total": "accurate"},
        {"code": "B20", "_summary": "count"},
        {"_id": "adv-h-hiv,adv-h-safeguarding", "_total": "accurate"},
    ):
        bundle = search(client, who.gp, "Condition", **params)
        assert bundle["total"] == 0, params
        assert refs(bundle) == []
        assert_no_markers(str(bundle.get("entry", "")), *HIV_MARKERS)


def test_search_by_post_filters_exactly_as_get(
    client: TestClient, world: World, who: Callers
) -> None:
    form = {"patient": f"Patient/{world.hospital_patient}", "_total": "accurate"}
    response = client.post(
        "/fhir/Condition/_search",
        data=form,
        headers={**who.gp, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["total"] == 2
    assert set(refs(bundle)) == {world.hospital_depression, world.hospital_fracture}
    assert_no_markers(body_text(response), *HIV_MARKERS, *SAFEGUARDING_MARKERS)


def test_not_and_missing_modifiers_do_not_surface_hidden_resources(
    client: TestClient, world: World, who: Callers
) -> None:
    of_hospital = f"Patient/{world.hospital_patient}"
    negated = search(
        client, who.gp, "Condition", patient=of_hospital, _total="accurate", **{"code:not": "X"}
    )
    assert set(refs(negated)) == {world.hospital_depression, world.hospital_fracture}
    assert negated["total"] == 2
    missing = search(
        client,
        who.gp,
        "Condition",
        patient=of_hospital,
        _total="accurate",
        **{"abatement-date:missing": "true"},
    )
    assert world.hospital_hiv not in refs(missing)
    assert missing["total"] == 2


def test_sorting_on_a_hidden_value_reveals_nothing(
    client: TestClient, world: World, who: Callers
) -> None:
    of_hospital = f"Patient/{world.hospital_patient}"
    for order in ("code", "-code"):
        bundle = search(client, who.gp, "Condition", patient=of_hospital, _sort=order, _count="1")
        first = refs(bundle)
        assert first in ([world.hospital_depression], [world.hospital_fracture]), order
        # Walking every page in this order yields the visible items only, in code order.
        walked = all_pages(
            client, who.gp, "/fhir/Condition", patient=of_hospital, _sort=order, _count="1"
        )
        by_code = {world.hospital_depression: "F32.1", world.hospital_fracture: "263225007"}
        assert walked == sorted(by_code, key=by_code.__getitem__, reverse=order.startswith("-"))


def test_search_for_a_person_by_nhs_number_from_an_unrelated_practice_finds_nothing(
    client: TestClient, world: World, who: Callers
) -> None:
    # Oakfield is named as the practice only in the hospital's copy: not a registration.
    bundle = search(
        client,
        who.gp_named_by_hospital,
        "Patient",
        identifier=f"{nhs.NHS_NUMBER_SYSTEM}|{NUMBER_A}",
        _total="accurate",
    )
    assert bundle["total"] == 0
    assert refs(bundle) == []
    assert visible_to(client, who.gp_named_by_hospital) == set()


# -- paging ----------------------------------------------------------------------------------


def test_paging_link_replayed_by_another_user_shows_only_their_items(
    client: TestClient, world: World, who: Callers
) -> None:
    first = search(client, who.gp, "Condition", _count="2", _sort="_id", _total="accurate")
    link = next_link(first)
    assert link is not None
    # The social worker has no relationship with anyone: only the council's records.
    replayed = get(client, link, who.social_worker)
    assert replayed.status_code == 200, replayed.text
    bundle = replayed.json()
    assert refs(bundle) == []
    assert bundle["total"] == 0
    assert next_link(bundle) is None
    # Their own walk from that cursor on never reaches the GP's items either.
    assert all_pages(client, who.social_worker, link) == []


# -- includes, chains and _has ---------------------------------------------------------------


def test_include_never_brings_in_a_hidden_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    for include in ("Observation:encounter", "Observation:encounter:Encounter", "*"):
        bundle = search(client, who.gp, "Observation", _id="adv-h-clinic-obs", _include=include)
        assert refs(bundle, "match") == [world.hospital_clinic_obs]
        assert world.hospital_hiv_clinic not in refs(bundle)
        assert_no_markers(str(bundle), "B20", "HIV disease")
    iterated = search(
        client,
        who.gp,
        "Patient",
        _id=world.hospital_patient,
        _revinclude="Observation:subject",
        **{"_include:iterate": "Observation:encounter"},
    )
    assert world.hospital_hiv_clinic not in refs(iterated)
    assert world.hospital_clinic_obs in refs(iterated)


def test_revinclude_never_brings_in_a_hidden_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    bundle = search(
        client, who.gp, "Patient", _id=world.hospital_patient, _revinclude="Condition:subject"
    )
    assert refs(bundle, "match") == [f"Patient/{world.hospital_patient}"]
    assert set(refs(bundle, "include")) == {world.hospital_depression, world.hospital_fracture}
    assert_no_markers(str(bundle), *HIV_MARKERS, *SAFEGUARDING_MARKERS)
    wildcard = search(client, who.gp, "Patient", _id=world.hospital_patient, _revinclude="*")
    for hidden in world.hidden_from_related_gp:
        assert hidden not in refs(wildcard)


def test_chained_search_does_not_match_through_a_hidden_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    # The Observation is visible; the Encounter it was recorded in is HIV-labelled and hidden.
    # If the chain matches, the GP learns the hidden encounter's reason.
    through_hidden = search(
        client,
        who.gp,
        "Observation",
        _total="accurate",
        **{"encounter:Encounter.reason-code": "B20"},
    )
    assert through_hidden["total"] == 0
    assert refs(through_hidden) == []


def test_chained_search_to_a_visible_target_still_works(
    client: TestClient, world: World, who: Callers
) -> None:
    # Control for the test above: a chain through visible Patients matches as usual, and a
    # chain through an unrelated practice's Patient finds nothing for that practice.
    bundle = search(
        client,
        who.gp,
        "Condition",
        **{"subject:Patient.identifier": f"{nhs.NHS_NUMBER_SYSTEM}|{NUMBER_A}"},
    )
    assert world.hospital_fracture in refs(bundle)
    assert world.hospital_hiv not in refs(bundle)
    assert world.hospital_safeguarding not in refs(bundle)
    elsewhere = search(
        client,
        who.gp_named_by_hospital,
        "Condition",
        **{"subject:Patient.family": "Okafor"},
    )
    assert refs(elsewhere) == []


def test_has_does_not_match_through_a_hidden_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    # The HIV diagnosis is hidden from the GP. If a reverse chain matched through it, the GP
    # would learn who has HIV by asking for the patients with that code.
    for code in ("B20", f"{ICD10}|B20"):
        for caller in (who.gp, {**who.gp, "Prefer": "handling=strict"}):
            bundle = search(
                client,
                caller,
                "Patient",
                _total="accurate",
                **{"_has:Condition:subject:code": code},
            )
            assert bundle["total"] == 0
            assert refs(bundle) == []
    # Nor through the Encounter whose reason is HIV, one level further in.
    nested = search(
        client,
        who.gp,
        "Patient",
        _total="accurate",
        **{"_has:Observation:subject:encounter:Encounter.reason-code": "B20"},
    )
    assert nested["total"] == 0
    # Control: through a diagnosis the GP may see, the same search finds the person, and
    # the hospital, which recorded the HIV diagnosis, finds them by it.
    visible = search(client, who.gp, "Patient", **{"_has:Condition:subject:code": "263225007"})
    assert refs(visible) == [f"Patient/{world.hospital_patient}"]
    own = search(client, who.hospital, "Patient", **{"_has:Condition:subject:code": "B20"})
    assert refs(own) == [f"Patient/{world.hospital_patient}"]


def test_chains_and_has_need_the_scopes_of_the_types_they_search(
    client: TestClient, world: World, issuer: DevelopmentIssuer
) -> None:
    # A token that may search Patients but not Conditions cannot filter Patients by their
    # Conditions, and one that may search Observations but not Patients cannot filter
    # Observations by their Patients' names: 403, as for searching that type itself.
    def gp(scope: str) -> Headers:
        claims = user_claims(GP_USER.split("/", 1)[1], organization=GP, role="R8000", scope=scope)
        claims["fhirUser"] = GP_USER
        return bearer(issuer, claims)

    patients_only = gp("user/Patient.rs")
    assert search(client, patients_only, "Patient")["resourceType"] == "Bundle"
    refused = get(client, "/fhir/Patient", patients_only, **{"_has:Condition:subject:code": "x"})
    assert refused.status_code == 403
    assert "Condition" in refused.json()["issue"][0]["diagnostics"]
    observations_only = gp("user/Observation.rs")
    chained = get(client, "/fhir/Observation", observations_only, **{"patient.family": "Okafor"})
    assert chained.status_code == 403
    nested = get(
        client,
        "/fhir/Patient",
        gp("user/Patient.rs user/Observation.rs"),
        **{"_has:Observation:subject:encounter:Encounter.status": "finished"},
    )
    assert nested.status_code == 403
    allowed = gp("user/Patient.rs user/Condition.rs")
    found = search(client, allowed, "Patient", **{"_has:Condition:subject:code": "263225007"})
    assert refs(found) == [f"Patient/{world.hospital_patient}"]


# -- history ---------------------------------------------------------------------------------


def test_instance_history_of_a_hidden_resource_is_404(
    client: TestClient, world: World, who: Callers
) -> None:
    missing = get(client, "/fhir/Condition/adv-never-existed/_history", who.gp)
    hidden = get(client, f"/fhir/{world.hospital_hiv}/_history", who.gp)
    assert_not_found_like_missing(hidden, missing, "adv-h-hiv")
    visible = get(client, f"/fhir/{world.hospital_fracture}/_history", who.gp)
    assert visible.status_code == 200
    assert refs(visible.json()) == [world.hospital_fracture]


def test_type_and_system_history_exclude_hidden_versions(
    client: TestClient, world: World, who: Callers
) -> None:
    conditions = all_pages(client, who.gp, "/fhir/Condition/_history", _count="3")
    assert world.hospital_fracture in conditions
    for hidden in (world.hospital_hiv, world.hospital_safeguarding):
        assert hidden not in conditions
    # The social worker, related to nobody, sees only the council's own history.
    everything = all_pages(client, who.social_worker, "/fhir/_history", _count="4")
    assert set(everything) == {
        f"Patient/{world.council_patient}",
        world.council_visit,
        world.council_plan,
    }


def test_an_old_sensitive_version_stays_hidden_after_recoding(
    client: TestClient, world: World, who: Callers
) -> None:
    recoded = "Condition/adv-h-recoded"
    put_all(
        client,
        [
            condition(
                recoded,
                HOSPITAL,
                world.hospital_patient,
                system=ICD10,
                code="B20",
                display="HIV disease",
            )
        ],
    )
    put_all(
        client,
        [
            condition(
                recoded,
                HOSPITAL,
                world.hospital_patient,
                system=SNOMED,
                code="263225007",
                display="Fracture",
            )
        ],
    )
    assert status_of(client, who.gp, recoded) == 200  # the current version is ordinary
    assert status_of(client, who.gp, f"{recoded}/_history/1") == 404
    history = get(client, f"/fhir/{recoded}/_history", who.gp)
    assert_no_markers(body_text(history), "B20", "HIV")


# -- $everything and the joined-up record -------------------------------------------------------


def test_everything_holds_the_shared_record_and_nothing_hidden(
    client: TestClient, world: World, who: Callers
) -> None:
    expected = set(world.person_a_shared) | {world.gp_termination}  # the GP's own record
    for start in (world.gp_patient, world.hospital_patient, world.council_patient):
        found = set(all_pages(client, who.gp, f"/fhir/Patient/{start}/$everything", _count="3"))
        assert found == expected, start
        first = get(client, f"/fhir/Patient/{start}/$everything", who.gp, _count="3").json()
        assert first["total"] == len(expected)  # Bundle.total counts only what is shown
        for hidden in (*world.hidden_from_related_gp, *world.person_b):
            assert hidden not in found


def test_everything_of_a_hidden_patient_is_404(
    client: TestClient, world: World, who: Callers
) -> None:
    missing = get(client, "/fhir/Patient/adv-never-existed/$everything", who.social_worker)
    hidden = get(client, f"/fhir/Patient/{world.gp_patient}/$everything", who.social_worker)
    assert hidden.status_code == missing.status_code == 404
    assert_no_markers(body_text(hidden), "Okafor", NUMBER_A)
    # Starting from a record they may see (their own) does not open the rest of the person.
    own = all_pages(client, who.social_worker, f"/fhir/Patient/{world.council_patient}/$everything")
    assert set(own) == {f"Patient/{world.council_patient}", world.council_visit, world.council_plan}


def test_record_summary_excludes_hidden_items(
    client: TestClient, world: World, who: Callers
) -> None:
    response = get(client, f"/record/{world.gp_patient}", who.gp)
    assert response.status_code == 200, response.text
    text = body_text(response)
    assert_no_markers(text, *HIV_MARKERS, *SAFEGUARDING_MARKERS, "Adeyemi", NUMBER_B)
    assert "263225007" in text  # the shared fracture is there
    hidden = get(client, f"/record/{world.gp_patient}", who.social_worker)
    assert hidden.status_code == 404
    assert_no_markers(body_text(hidden), "Okafor", "Asthma")


# -- $match ----------------------------------------------------------------------------------


def _match(client: TestClient, headers: Headers) -> Any:
    probe = patient(
        "probe",
        GP,
        nhs_number=NUMBER_A,
        family="Okafor",
        given="Adaeze",
        birth_date="1941-03-12",
        gender="female",
    )
    del probe["id"], probe["meta"]
    return client.post(
        "/fhir/Patient/$match",
        json={"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": probe}]},
        headers=headers,
    )


@pytest.mark.parametrize(
    "caller", ["gp", "hospital_admin", "officer", "patient", "rogue_system", "gp_system"]
)
def test_match_is_refused_to_callers_the_agreement_does_not_name(
    client: TestClient, world: World, who: Callers, caller: str
) -> None:
    response = _match(client, getattr(who, caller))
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert_no_markers(body_text(response), "Okafor", NUMBER_A, world.gp_patient)


def test_match_answers_named_systems_with_minimal_demographics_and_is_audited(
    client: TestClient, connection: Connection, world: World, who: Callers
) -> None:
    for caller in (who.integration, who.hospital_pas):
        response = _match(client, caller)
        assert response.status_code == 200, response.text
        bundle = response.json()
        found = refs(bundle)
        assert set(found) == {f"Patient/{p}" for p in world.person_a_patients}
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert {"telecom", "generalPractitioner", "active"}.isdisjoint(resource)
            assert all(set(a) == {"postalCode"} for a in resource.get("address", []))
            assert all(i["system"] == nhs.NHS_NUMBER_SYSTEM for i in resource["identifier"])
            assert {"code": "SUBSETTED"}.items() <= resource["meta"]["tag"][-1].items()
        assert_no_markers(body_text(response), "Synthetic Row", "07700", "mrn-")
    rows = audit_rows(connection, interaction="$match", agent="integration")
    assert rows
    assert all(r.outcome == Outcome.SUCCESS.value for r in rows)
    assert len({r.person for r in rows}) == len(rows) == 1  # one person touched, one event


# -- transaction and batch --------------------------------------------------------------------


def _batch(client: TestClient, headers: Headers, *urls: str, kind: str = "batch") -> Any:
    entries = [{"request": {"method": "GET", "url": url}} for url in urls]
    return client.post(
        "/fhir", json={"resourceType": "Bundle", "type": kind, "entry": entries}, headers=headers
    )


def test_batch_get_entries_answer_hidden_as_missing(
    client: TestClient, world: World, who: Callers
) -> None:
    response = _batch(
        client,
        who.social_worker,
        world.hospital_hiv,
        "Condition/adv-never-existed",
        f"Condition?patient=Patient/{world.hospital_patient}&_total=accurate",
        f"Patient/{world.gp_patient}/_history",
    )
    assert response.status_code == 200, response.text
    # A read entry may name the id it was asked for, as for any missing resource.
    assert_no_markers(body_text(response), "B20", "HIV disease", "Fracture", "F32.1", "Okafor")
    hidden, missing, searched, history = response.json()["entry"]
    assert hidden["response"]["status"] == missing["response"]["status"]
    assert hidden["response"]["status"].startswith("404")
    assert hidden.get("resource", {}).get("resourceType", "OperationOutcome") == "OperationOutcome"
    assert searched["resource"]["total"] == 0
    assert refs(searched["resource"]) == []
    assert "resource" not in history or history["resource"]["resourceType"] == "OperationOutcome"


def test_transaction_get_of_a_hidden_resource_fails_as_for_a_missing_one(
    client: TestClient, world: World, who: Callers
) -> None:
    hidden = _batch(client, who.social_worker, world.hospital_hiv, kind="transaction")
    missing = _batch(client, who.social_worker, "Condition/adv-never-existed", kind="transaction")
    assert hidden.status_code == missing.status_code
    assert_no_markers(body_text(hidden), "B20", "HIV disease", "versionId")
    if hidden.status_code == 200:
        [entry] = hidden.json()["entry"]
        [absent] = missing.json()["entry"]
        assert entry["response"]["status"] == absent["response"]["status"]
    else:
        assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]
    searched = _batch(
        client,
        who.social_worker,
        f"Condition?patient=Patient/{world.hospital_patient}&_total=accurate",
        kind="transaction",
    )
    assert searched.status_code == 200, searched.text
    [entry] = searched.json()["entry"]
    assert entry["resource"]["total"] == 0
    assert_no_markers(body_text(searched), "B20", "Fracture", "F32.1")


def test_bundle_get_of_a_missing_resource_is_404_entry(
    client: TestClient, world: World, who: Callers
) -> None:
    response = _batch(client, who.social_worker, "Condition/adv-never-existed")
    assert response.status_code == 200, response.text
    [entry] = response.json()["entry"]
    assert entry["response"]["status"].startswith("404")
    assert "resource" not in entry or entry["resource"]["resourceType"] == "OperationOutcome"


# -- writes: conditional, cross-organisation, responses ------------------------------------------


def _version(client: TestClient, reference: str) -> str:
    response = client.get(f"/fhir/{reference}")  # the suite's system client sees everything
    assert response.status_code == 200, response.text
    return str(response.json()["meta"]["versionId"])


def test_conditional_update_never_matches_another_organisations_patient(
    client: TestClient, world: World, who: Callers
) -> None:
    mine = patient(
        "ignored",
        GP_OTHER,
        nhs_number=NUMBER_A,
        family="Okafor",
        given="Ada",
        birth_date="1941-03-12",
        gender="female",
    )
    del mine["id"]
    response = client.put(
        "/fhir/Patient",
        params={"identifier": f"{nhs.NHS_NUMBER_SYSTEM}|{NUMBER_A}"},
        json=mine,
        headers=who.gp_other,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] not in world.person_a_patients
    assert created["meta"]["source"] == SOURCE + GP_OTHER
    assert_no_markers(body_text(response), "Adaeze", world.gp_patient, world.hospital_patient)
    for patient_id in world.person_a_patients:
        assert _version(client, f"Patient/{patient_id}") == "1"


def test_conditional_create_does_not_return_another_organisations_match(
    client: TestClient, world: World, who: Callers
) -> None:
    mine = condition(
        "Condition/ignored",
        GP_OTHER,
        world.gp_patient,
        system=SNOMED,
        code="195967001",
        display="Asthma",
    )
    del mine["id"]
    response = client.post(
        "/fhir/Condition",
        json=mine,
        headers={**who.gp_other, "If-None-Exist": "code=195967001"},
    )
    assert response.status_code == 201, response.text  # not 200 with Millbrook's condition
    assert response.json()["id"] != "adv-gp-asthma"


def test_conditional_delete_never_matches_another_organisations_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    response = client.delete("/fhir/Condition", params={"code": "195967001"}, headers=who.gp_other)
    assert response.status_code in (200, 204)
    assert _version(client, world.gp_asthma) == "1"


def test_user_cannot_change_another_organisations_resource(
    client: TestClient, world: World, who: Callers
) -> None:
    changed = next(r for r in world_resources() if r["id"] == "adv-gp-asthma")
    changed = {**changed, "onsetDateTime": "2001-01-01"}
    put = client.put(f"/fhir/{world.gp_asthma}", json=changed, headers=who.hospital)
    assert put.status_code == 404
    assert_no_markers(body_text(put), "Asthma", "195967001")
    assert _version(client, world.gp_asthma) == "1"


def test_user_cannot_create_a_resource_attributed_to_another_organisation(
    client: TestClient, world: World, who: Callers
) -> None:
    forged = condition(
        "Condition/adv-forged",
        GP,
        world.gp_patient,
        system=SNOMED,
        code="195967001",
        display="Asthma",
    )
    del forged["id"]
    response = client.post("/fhir/Condition", json=forged, headers=who.gp_other)
    assert response.status_code == 403
    in_bundle = client.post(
        "/fhir",
        json={
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": forged, "request": {"method": "POST", "url": "Condition"}}],
        },
        headers=who.gp_other,
    )
    assert in_bundle.status_code == 403
    found = search(client, {}, "Condition", code="195967001", _total="accurate")
    assert found["total"] == 1  # only Millbrook's own


@pytest.mark.parametrize("path", ["rest", "transaction"])
def test_resending_a_hidden_resource_unchanged_does_not_confirm_it(
    client: TestClient, world: World, who: Callers, path: str
) -> None:
    guessed = next(r for r in world_resources() if r["id"] == "adv-h-hiv")
    if path == "rest":
        response = client.put(
            f"/fhir/{world.hospital_hiv}", json=guessed, headers=who.social_worker
        )
    else:
        entry = {"resource": guessed, "request": {"method": "PUT", "url": world.hospital_hiv}}
        response = client.post(
            "/fhir",
            json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]},
            headers=who.social_worker,
        )
    assert response.status_code == 404
    assert_no_markers(body_text(response), "versionId", "HIV/AIDS")


def test_delete_of_a_hidden_resource_answers_as_for_a_missing_one(
    client: TestClient, world: World, who: Callers
) -> None:
    missing = client.delete("/fhir/Condition/adv-never-existed", headers=who.social_worker)
    hidden = client.delete(f"/fhir/{world.hospital_hiv}", headers=who.social_worker)
    assert hidden.status_code == missing.status_code
    assert _version(client, world.hospital_hiv) == "1"


def test_if_match_on_a_hidden_resource_reveals_no_version(
    client: TestClient, world: World, who: Callers
) -> None:
    body = next(r for r in world_resources() if r["id"] == "adv-h-hiv")
    body = {**body, "onsetDateTime": "2001-01-01"}
    hidden = client.put(
        f"/fhir/{world.hospital_hiv}", json=body, headers={**who.social_worker, "If-Match": 'W/"7"'}
    )
    missing = client.put(
        "/fhir/Condition/adv-never-existed",
        json={**body, "id": "adv-never-existed"},
        headers={**who.social_worker, "If-Match": 'W/"7"'},
    )
    assert hidden.status_code == missing.status_code
    assert "version 1" not in body_text(hidden)
    assert hidden.json()["issue"][0]["diagnostics"] == missing.json()["issue"][0][
        "diagnostics"
    ].replace("adv-never-existed", "adv-h-hiv")


def test_write_response_carries_only_what_the_caller_wrote(
    client: TestClient, world: World, who: Callers
) -> None:
    # A Riverside clinician records an observation against Millbrook's patient id: the
    # response is their own resource, with nothing of Millbrook's patient in it.
    mine = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{world.gp_patient}"},
        "valueQuantity": {
            "value": 60,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }
    response = client.post("/fhir/Observation", json=mine, headers=who.social_worker)
    assert response.status_code == 201, response.text
    assert_no_markers(body_text(response), "Okafor", NUMBER_A, "Asthma")
    assert response.json()["meta"]["source"] == SOURCE + COUNCIL


# -- objections and consents -----------------------------------------------------------------


def test_blanket_objection_hides_shared_records_until_withdrawn(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(client, [open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient)])
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.gp, world.hospital_fracture) == 200
    objection = privacy_consent("Consent/adv-objection", GP, world.gp_patient)
    put_all(client, [objection])
    # The very next request: shared records vanish, each organisation keeps its own.
    for caller, hidden, own in (
        (who.hospital, world.gp_asthma, world.hospital_fracture),
        (who.gp, world.hospital_fracture, world.gp_asthma),
        (who.gp, world.council_visit, world.gp_weight),
    ):
        assert status_of(client, caller, hidden) == 404
        assert status_of(client, caller, own) == 200
    assert world.gp_asthma not in all_pages(
        client, who.hospital, f"/fhir/Patient/{world.hospital_patient}/$everything"
    )
    # The Consent itself is the GP's record: nobody else reads it.
    assert status_of(client, who.hospital, "Consent/adv-objection") == 404
    # Withdrawn (made inactive): back on the very next request.
    put_all(client, [{**objection, "status": "inactive"}])
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.gp, world.hospital_fracture) == 200


def test_objection_withdrawn_by_deleting_the_consent(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(client, [privacy_consent("Consent/adv-objection", GP, world.gp_patient)])
    assert status_of(client, who.gp, world.hospital_fracture) == 404
    assert client.delete("/fhir/Consent/adv-objection").status_code == 204
    assert status_of(client, who.gp, world.hospital_fracture) == 200


def test_objection_to_one_recipient_hides_only_from_them(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(
        client,
        [
            open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient),
            privacy_consent("Consent/adv-not-hospital", GP, world.gp_patient, recipient=HOSPITAL),
        ],
    )
    seen_by_hospital = visible_to(client, who.hospital)
    for hidden in (
        world.gp_asthma,
        world.gp_weight,
        world.council_visit,
        f"Patient/{world.gp_patient}",
    ):
        assert hidden not in seen_by_hospital
    assert world.hospital_fracture in seen_by_hospital
    # The GP is not the recipient named: the hospital's and the council's records stay shared.
    assert status_of(client, who.gp, world.hospital_fracture) == 200
    assert status_of(client, who.gp, world.council_visit) == 200


def test_objection_to_one_source_hides_only_that_source(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(
        client, [privacy_consent("Consent/adv-not-council", GP, world.gp_patient, source=COUNCIL)]
    )
    seen = visible_to(client, who.gp)
    assert world.council_visit not in seen
    assert world.council_plan not in seen
    assert f"Patient/{world.council_patient}" not in seen
    assert world.hospital_fracture in seen


def test_more_specific_permit_beats_a_blanket_objection(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(
        client,
        [
            open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient),
            privacy_consent(
                "Consent/adv-only-hospital",
                GP,
                world.gp_patient,
                exceptions=(permit_exception(recipient=HOSPITAL),),
            ),
        ],
    )
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.gp, world.hospital_fracture) == 404
    # The permit does not lift sensitivity: HIV and never-share stay hidden.
    assert status_of(client, who.hospital, world.gp_termination) == 404


def test_sealed_item_is_hidden_from_related_clinicians_but_not_its_recorder(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(
        client,
        [
            privacy_consent(
                "Consent/adv-seal", GP, world.gp_patient, items=(world.hospital_fracture,)
            )
        ],
    )
    missing = get(client, "/fhir/Condition/adv-never-existed", who.gp)
    assert_not_found_like_missing(
        get(client, f"/fhir/{world.hospital_fracture}", who.gp), missing, "adv-h-fracture"
    )
    assert world.hospital_fracture not in visible_to(client, who.gp)
    assert world.hospital_fracture not in all_pages(
        client, who.gp, f"/fhir/Patient/{world.gp_patient}/$everything"
    )
    assert_no_markers(body_text(get(client, f"/record/{world.gp_patient}", who.gp)), "263225007")
    # The rest of the record is still shared...
    assert status_of(client, who.gp, world.hospital_depression) == 200
    # ...and the hospital, which recorded it, still sees it without any relationship.
    assert status_of(client, who.hospital, world.hospital_fracture) == 200


# -- sensitivity -------------------------------------------------------------------------------


@pytest.mark.parametrize("caller", ["gp", "gp_nurse"])
def test_rule_listed_category_is_shared_and_unlisted_is_not(
    client: TestClient, world: World, who: Callers, caller: str
) -> None:
    headers = getattr(who, caller)
    assert status_of(client, headers, world.hospital_depression) == 200  # mental_health: listed
    assert status_of(client, headers, world.hospital_hiv) == 404  # hiv: no rule names it
    assert status_of(client, headers, world.hospital_safeguarding) == 404
    assert status_of(client, headers, world.hospital_hiv_clinic) == 404


def test_social_care_rule_shares_no_sensitive_category_and_no_observations(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(
        client,
        [
            episode_of_care(
                "EpisodeOfCare/adv-c-episode",
                COUNCIL,
                world.council_patient,
                care_manager=SOCIAL_WORKER_USER,
                managing=COUNCIL,
            )
        ],
    )
    seen = visible_to(client, who.social_worker)
    assert {world.gp_asthma, world.hospital_fracture} <= seen
    for hidden in (
        world.hospital_depression,  # mental_health is not named by the social care rule
        world.hospital_hiv,
        world.hospital_safeguarding,
        world.gp_termination,
        world.gp_weight,  # observations are not a category of that rule
        world.hospital_bp,
    ):
        assert hidden not in seen


def test_never_share_category_is_seen_only_by_its_recorder(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(client, [open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient)])
    assert status_of(client, who.gp, world.gp_termination) == 200  # Millbrook recorded it
    for caller in (who.hospital, who.integration, who.hospital_pas, who.social_worker):
        assert status_of(client, caller, world.gp_termination) == 404
    # Not even the suite's own wildcard client gets it.
    assert client.get(f"/fhir/{world.gp_termination}").status_code == 404
    bundle = search(client, who.integration, "Condition", code="O04.9", _total="accurate")
    assert bundle["total"] == 0


# -- relationships -------------------------------------------------------------------------------


def test_open_encounter_opens_the_record_and_finishing_it_closes_it(
    client: TestClient, world: World, who: Callers
) -> None:
    assert status_of(client, who.hospital, world.gp_asthma) == 404
    admission = open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient)
    put_all(client, [admission])
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.hospital, world.council_visit) == 200
    assert status_of(client, who.hospital, world.gp_termination) == 404
    finished = {
        **admission,
        "status": "finished",
        "period": {"start": "2026-01-01T08:00:00Z", "end": "2026-01-02T08:00:00Z"},
    }
    put_all(client, [finished])
    assert status_of(client, who.hospital, world.gp_asthma) == 404
    assert status_of(client, who.hospital, world.hospital_fracture) == 200  # its own


def test_care_team_membership_grants_the_named_practitioner_only(
    client: TestClient, world: World, who: Callers
) -> None:
    team = care_team("CareTeam/adv-c-team", COUNCIL, world.council_patient, members=[HOSPITAL_USER])
    put_all(client, [team])
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.hospital_other, world.gp_asthma) == 404
    assert world.gp_asthma not in visible_to(client, who.hospital_other)
    put_all(client, [{**team, "status": "inactive"}])
    assert status_of(client, who.hospital, world.gp_asthma) == 404


def test_care_manager_of_an_episode_is_related(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(
        client,
        [
            episode_of_care(
                "EpisodeOfCare/adv-h-episode",
                HOSPITAL,
                world.hospital_patient,
                care_manager=HOSPITAL_USER,
                managing=COUNCIL,
            )
        ],
    )
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.hospital_other, world.gp_asthma) == 404


def test_registration_counts_only_when_a_gp_practice_recorded_it(
    client: TestClient, world: World, who: Callers
) -> None:
    # The hospital's copy names Oakfield as the practice: that opens nothing to Oakfield.
    for reference in (
        world.gp_asthma,
        world.hospital_fracture,
        f"Patient/{world.hospital_patient}",
    ):
        assert status_of(client, who.gp_named_by_hospital, reference) == 404
    # Millbrook's own registration does open the hospital's and the council's records.
    assert status_of(client, who.gp, world.council_plan) == 200


def test_identity_role_sees_demographics_only(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(client, [open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient)])
    assert status_of(client, who.hospital_admin, f"Patient/{world.gp_patient}") == 200
    for hidden in (world.gp_asthma, world.gp_weight, world.council_visit):
        assert status_of(client, who.hospital_admin, hidden) == 404


# -- the person themselves ----------------------------------------------------------------------


def test_patient_sees_own_linked_record_but_not_nopat_safeguarding_or_others(
    client: TestClient, world: World, who: Callers
) -> None:
    seen = visible_to(client, who.patient)
    assert {
        world.gp_asthma,
        world.hospital_fracture,
        world.council_visit,
        world.hospital_hiv,
    } <= seen
    for hidden in (world.gp_nopat, world.hospital_safeguarding, *world.person_b):
        assert hidden not in seen
    missing = get(client, "/fhir/Condition/adv-never-existed", who.patient)
    for hidden in (world.gp_nopat, world.hospital_safeguarding, world.other_diabetes):
        hidden_id = hidden.split("/")[1]
        assert_not_found_like_missing(
            get(client, f"/fhir/{hidden}", who.patient), missing, hidden_id
        )
    everything = all_pages(client, who.patient, f"/fhir/Patient/{world.gp_patient}/$everything")
    for hidden in (world.gp_nopat, world.hospital_safeguarding, *world.person_b):
        assert hidden not in everything
    assert (
        get(client, f"/fhir/Patient/{world.other_patient}/$everything", who.patient).status_code
        == 404
    )
    count = search(client, who.patient, "Condition", _summary="count")
    assert count["total"] == len([r for r in seen if r.startswith("Condition/")])


def test_patient_cannot_write_anything(client: TestClient, world: World, who: Callers) -> None:
    objection = privacy_consent("Consent/adv-self", GP, world.gp_patient)
    response = client.put("/fhir/Consent/adv-self", json=objection, headers=who.patient)
    assert response.status_code == 403
    assert status_of(client, who.gp, world.hospital_fracture) == 200


# -- the notice that something is withheld -----------------------------------------------------


def test_withheld_notice_says_neither_what_nor_how_much(
    client: TestClient, world: World, who: Callers
) -> None:
    bundle = search(client, who.gp, "Condition", patient=f"Patient/{world.hospital_patient}")
    [notice] = withheld_notices(bundle)
    text = str(notice)
    assert_no_markers(text, *HIV_MARKERS, *SAFEGUARDING_MARKERS, "2", "two", "Z9H")
    assert bundle["total"] == len(refs(bundle)) == 2
    # A search about a person with nothing hidden of that type carries no notice.
    plans = search(client, who.gp, "CarePlan", patient=f"Patient/{world.council_patient}")
    assert withheld_notices(plans) == []


@pytest.mark.parametrize("caller", ["gp_other", "social_worker", "patient_b"])
def test_withheld_notice_does_not_reveal_a_person_the_caller_cannot_see(
    client: TestClient, world: World, who: Callers, caller: str
) -> None:
    headers = getattr(who, caller)
    about_hidden = search(client, headers, "Condition", patient=f"Patient/{world.gp_patient}")
    about_nobody = search(client, headers, "Condition", patient="Patient/adv-never-existed")
    assert about_hidden.get("entry") == about_nobody.get("entry")
    assert about_hidden["total"] == about_nobody["total"] == 0


def test_patient_is_not_told_that_nopat_or_safeguarding_items_exist(
    client: TestClient, world: World, who: Callers
) -> None:
    for patient_id in (world.gp_patient, world.hospital_patient):
        bundle = search(client, who.patient, "Condition", patient=f"Patient/{patient_id}")
        assert withheld_notices(bundle) == [], patient_id
    everything = get(client, f"/fhir/Patient/{world.gp_patient}/$everything", who.patient)
    assert withheld_notices(everything.json()) == []
    summary = get(client, f"/record/{world.gp_patient}", who.patient).json()
    assert summary["withheld"] is False


# -- break-glass and self-claimed relationships ------------------------------------------------


def _btg(issuer: DevelopmentIssuer, fhir_user: str, role: str = "R8000") -> Headers:
    claims: dict[str, object] = {
        "sub": fhir_user.split("/", 1)[1],
        "fhirUser": fhir_user,
        "organization": HOSPITAL,
        "role": role,
        "scope": "user/*.cruds",
        "purpose_of_use": "BTG",
    }
    return bearer(issuer, claims)


def _break_glass(client: TestClient, headers: Headers, patient_id: str) -> Any:
    return client.post(
        "/consent/break-glass",
        json={"patient": f"Patient/{patient_id}", "reason": "Unconscious in resus, no history"},
        headers=headers,
    )


def test_break_glass_lifts_objections_but_not_seals_sensitivity_or_never_share(
    client: TestClient, world: World, who: Callers, issuer: DevelopmentIssuer
) -> None:
    put_all(
        client,
        [
            privacy_consent("Consent/adv-objection", GP, world.gp_patient),
            privacy_consent("Consent/adv-seal", GP, world.gp_patient, items=(world.gp_weight,)),
        ],
    )
    emergency = _btg(issuer, HOSPITAL_USER)
    assert status_of(client, emergency, world.gp_asthma) == 404  # no grant yet
    granted = _break_glass(client, emergency, world.hospital_patient)
    assert granted.status_code == 201, granted.text
    assert status_of(client, emergency, world.gp_asthma) == 200  # objection lifted
    for hidden in (world.gp_weight, world.gp_termination):  # sealed; never shared
        assert status_of(client, emergency, hidden) == 404
    for hidden in (*world.person_b,):
        assert status_of(client, emergency, hidden) == 404
    # The grant is the doctor's alone, and only under purpose BTG.
    assert status_of(client, who.hospital, world.gp_asthma) == 404
    assert status_of(client, _btg(issuer, HOSPITAL_OTHER_USER), world.gp_asthma) == 404


def test_break_glass_is_refused_to_roles_the_agreement_does_not_name(
    client: TestClient, world: World, who: Callers, issuer: DevelopmentIssuer
) -> None:
    nurse = _btg(issuer, "Practitioner/adv-nurse-hospital", role="R8001")
    refused = _break_glass(client, nurse, world.hospital_patient)
    assert refused.status_code == 403
    assert_no_markers(body_text(refused), "Okafor", "Asthma")
    assert status_of(client, nurse, world.gp_asthma) == 404
    # Without BTG purpose a doctor cannot break glass either.
    assert _break_glass(client, who.hospital, world.hospital_patient).status_code == 403


def test_self_claimed_relationship_opens_the_record_to_the_claimant_only(
    client: TestClient, world: World, who: Callers
) -> None:
    def claim(headers: Headers) -> Any:
        return client.post(
            "/consent/relationships",
            json={
                "patient": f"Patient/{world.hospital_patient}",
                "reason": "Referred to my clinic today",
            },
            headers=headers,
        )

    assert claim(who.hospital_admin).status_code == 403  # R8008 may not claim
    assert status_of(client, who.hospital_admin, f"Patient/{world.gp_patient}") == 404
    assert claim(who.hospital).status_code == 201
    assert status_of(client, who.hospital, world.gp_asthma) == 200
    assert status_of(client, who.hospital, world.gp_termination) == 404
    assert status_of(client, who.hospital, world.other_diabetes) == 404
    assert status_of(client, who.hospital_other, world.gp_asthma) == 404


# -- identity: who may join and separate records -------------------------------------------------


def test_unrelated_clinician_cannot_unlink_a_persons_records(
    app: FastAPI, client: TestClient, world: World, who: Callers
) -> None:
    response = client.post(
        "/identity/unlink",
        json={"patient": f"Patient/{world.hospital_patient}", "reason": "not the same person"},
        headers=who.gp_other,
    )
    dispatch(app)
    assert response.status_code == 403
    assert status_of(client, who.gp, world.hospital_fracture) == 200


def test_linking_someone_elses_record_to_ones_own_patient_does_not_open_it(
    app: FastAPI, client: TestClient, world: World, who: Callers
) -> None:
    decoy = {
        "resourceType": "Patient",
        "name": [{"family": "Decoy", "given": ["Sam"]}],
        "gender": "unknown",
        "birthDate": "1990-01-01",
    }
    created = client.post("/fhir/Patient", json=decoy, headers=who.gp_other)
    assert created.status_code == 201, created.text
    dispatch(app)
    client.post(
        "/identity/link",
        json={
            "patient": f"Patient/{world.hospital_patient}",
            "other": f"Patient/{created.json()['id']}",
            "reason": "same person, checked by phone",
        },
        headers=who.gp_other,
    )
    dispatch(app)
    for reference in (world.hospital_fracture, world.hospital_depression):
        assert status_of(client, who.gp_other, reference) == 404


# -- purpose of use ------------------------------------------------------------------------------


def test_case_finding_purpose_sees_only_what_that_rule_names(
    client: TestClient, world: World, who: Callers, issuer: DevelopmentIssuer
) -> None:
    case_finder = bearer(
        issuer,
        {
            "sub": "adv-gp-millbrook",
            "fhirUser": GP_USER,
            "organization": GP,
            "role": "R8000",
            "scope": "user/*.cruds",
            "purpose_of_use": "CASEFIND",
        },
    )
    # The case-finding rule names demographics, problems and encounters, and no sensitivity.
    assert status_of(client, case_finder, world.hospital_fracture) == 200
    assert status_of(client, case_finder, world.council_visit) == 200
    for hidden in (
        world.hospital_bp,  # observations
        world.council_plan,  # care planning
        world.hospital_depression,  # mental health is listed only for direct care
        world.hospital_hiv,
    ):
        assert status_of(client, case_finder, hidden) == 404
    assert status_of(client, case_finder, world.gp_weight) == 200  # its own record


# -- system clients, unknown organisations, privacy officers -----------------------------------------


def test_system_clients_see_what_their_clause_names_and_no_more(
    client: TestClient, world: World, who: Callers
) -> None:
    # hospital-pas: the hospital's own system, with a clause for hospital demographics only.
    assert status_of(client, who.hospital_pas, f"Patient/{world.hospital_patient}") == 200
    assert status_of(client, who.hospital_pas, f"Patient/{world.gp_patient}") == 404
    assert status_of(client, who.hospital_pas, world.gp_asthma) == 404
    # A client the agreement does not name sees nothing but the directory.
    assert visible_to(client, who.rogue_system) == set()
    # Millbrook's own unnamed system sees Millbrook's records, and no one else's.
    own = visible_to(client, who.gp_system)
    assert world.gp_termination in own
    assert world.hospital_fracture not in own
    assert not set(world.person_b) & own


def test_organisation_not_in_the_agreement_sees_only_its_own_records(
    client: TestClient, app: FastAPI, who: Callers
) -> None:
    own = encounter(
        "Encounter/adv-elsewhere-visit",
        NOT_A_PARTY,
        WORLD.gp_patient,
        status="in-progress",
        start="2026-01-01T08:00:00Z",
        provider=NOT_A_PARTY,
    )
    build_world(app, client, own)
    assert visible_to(client, who.not_a_party) == {"Encounter/adv-elsewhere-visit"}
    assert status_of(client, who.not_a_party, WORLD.gp_asthma) == 404


def test_privacy_officer_reads_the_audit_not_the_record(
    client: TestClient, world: World, who: Callers
) -> None:
    assert status_of(client, who.gp, world.hospital_fracture) == 200
    assert status_of(client, who.officer, world.gp_asthma) == 404
    assert status_of(client, who.officer, f"Patient/{world.gp_patient}") == 404
    trail = get(client, "/fhir/AuditEvent", who.officer, agent=GP_USER)
    assert trail.status_code == 200, trail.text
    assert trail.json().get("entry")
    refused = get(client, "/fhir/AuditEvent", who.gp, agent=GP_USER)
    assert refused.status_code == 403


# -- audit --------------------------------------------------------------------------------------


def test_permitted_read_writes_one_success_event(
    client: TestClient, connection: Connection, world: World, who: Callers
) -> None:
    assert status_of(client, who.gp, world.hospital_fracture) == 200
    rows = audit_rows(connection, agent=GP_USER, interaction="read")
    assert len(rows) == 1
    [row] = rows
    assert row.outcome == Outcome.SUCCESS.value
    assert row.resource == world.hospital_fracture
    assert row.organisation == GP
    assert row.person is not None
    assert row.person.startswith("Person/")


def test_search_writes_one_event_per_person_touched(
    client: TestClient, connection: Connection, world: World, who: Callers
) -> None:
    bundle = search(client, who.integration, "Condition", _count="50")
    assert world.hospital_fracture in refs(bundle)
    assert world.other_diabetes in refs(bundle)
    rows = audit_rows(connection, agent="integration", interaction="search-type")
    persons = [r.person for r in rows]
    assert len(persons) == len(set(persons)) == 2
    assert all(p and p.startswith("Person/") for p in persons)


def test_denied_read_writes_a_refusal_event(
    client: TestClient, connection: Connection, world: World, who: Callers
) -> None:
    assert status_of(client, who.gp, world.hospital_hiv) == 404
    rows = audit_rows(connection, agent=GP_USER)
    assert [r.outcome for r in rows] == [Outcome.DENIED.value]
    assert rows[0].interaction == "read"
    assert_no_markers(rows[0].detail or "", "B20", "HIV disease")


@pytest.fixture
def failing_audit(monkeypatch: pytest.MonkeyPatch, connection: Connection) -> None:
    """Every audit insert fails (the read path, the routers and the failure recorder)."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("audit store unavailable")

    for module in (
        "fhir_gateway.store.reads",
        "fhir_gateway.rest.router",
        "fhir_gateway.rest.record",
        "fhir_gateway.record.everything",
        "fhir_gateway.audit.repository",
    ):
        monkeypatch.setattr(f"{module}.add_events", refuse)
    if connection.dialect.name == "postgresql":
        # On PostgreSQL $everything inserts its AuditEvents inside its own statement: the
        # database itself refuses them (in the test's transaction, rolled back after it).
        connection.execute(
            text(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$BEGIN RAISE EXCEPTION 'audit store unavailable'; END$$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_event "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )
        )


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/Condition/adv-h-fracture",
        "/fhir/Condition/adv-h-fracture/_history/1",
        "/fhir/Condition?patient=Patient/adv-h-a",
        "/fhir/Condition/_history",
        "/fhir/Patient/adv-gp-a/$everything",
        "/record/adv-gp-a",
    ],
)
def test_failed_audit_releases_no_data(
    client: TestClient, world: World, who: Callers, failing_audit: None, path: str
) -> None:
    response = client.get(path, headers=who.gp)
    assert response.status_code >= 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert_no_markers(body_text(response), "263225007", "Fracture", "Okafor", 'adv-h-fracture"')


# -- authentication -----------------------------------------------------------------------------


def test_expired_or_forged_tokens_are_refused_without_data(
    client: TestClient, world: World, issuer: DevelopmentIssuer
) -> None:
    expired = {"Authorization": f"Bearer {issuer.issue(SYSTEM_CLAIMS, lifetime=-600)}"}
    token = issuer.issue(SYSTEM_CLAIMS)
    head, payload, signature = token.split(".")
    forged = {"Authorization": f"Bearer {head}.{payload}.{signature[::-1]}"}
    for headers in (expired, forged, {"Authorization": ""}, {"Authorization": "Bearer nonsense"}):
        response = client.get(f"/fhir/{world.hospital_fracture}", headers=headers)
        assert response.status_code == 401, headers
        assert_no_markers(body_text(response), "263225007", "Okafor")


# -- one person's relationships and choices concern that person alone ----------------------------
#
# The person of a resource is found through a subquery nested inside the relationship and
# directive EXISTS; uncorrelated, it ranges over every resource, so a relationship with anyone
# opens everyone and anyone's objection governs everyone (fixed in store/visibility.py by
# in_person(); these are its regression tests over HTTP, one per path).


def _replay_first_page_link(client: TestClient, world: World, who: Callers) -> Any:
    first = search(client, who.gp, "Condition", _count="1", _sort="_id")
    link = next_link(first)
    assert link is not None
    return get(client, link, who.gp_other)


PROBES: dict[str, Callable[[TestClient, World, Callers], Any]] = {
    "read": lambda c, w, who: get(c, f"/fhir/{w.gp_asthma}", who.gp_other),
    "vread": lambda c, w, who: get(c, f"/fhir/{w.hospital_fracture}/_history/1", who.gp_other),
    "search": lambda c, w, who: get(
        c, "/fhir/Condition", who.gp_other, patient=f"Patient/{w.gp_patient}"
    ),
    "summary-count": lambda c, w, who: get(
        c, "/fhir/Condition", who.gp_other, _summary="count", code="195967001"
    ),
    "history": lambda c, w, who: get(c, f"/fhir/{w.gp_asthma}/_history", who.gp_other),
    "everything": lambda c, w, who: get(
        c, f"/fhir/Patient/{w.gp_patient}/$everything", who.gp_other
    ),
    "record": lambda c, w, who: get(c, f"/record/{w.gp_patient}", who.gp_other),
    "paging-replay": _replay_first_page_link,
}


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_unrelated_practice_sees_nothing_of_a_person_registered_elsewhere(
    client: TestClient, world: World, who: Callers, probe: str
) -> None:
    # Riverside's GP is related to their own patient (person B) and to nobody else.
    response = PROBES[probe](client, world, who)
    text = body_text(response)
    assert response.status_code in (200, 404), text
    if response.status_code == 200:
        bundle = response.json()
        # Only what Riverside may see: its own patient's records.
        assert set(refs(bundle)) <= set(world.person_b)
        assert bundle.get("total", 0) <= len(world.person_b)
        text = str(bundle.get("entry", ""))  # the links echo the query, nothing more
    assert_no_markers(text, "Asthma", "Anaemia", "195967001", "Fracture", "Okafor")


def test_an_open_encounter_for_one_person_opens_no_other_person(
    client: TestClient, world: World, who: Callers
) -> None:
    put_all(client, [open_encounter("Encounter/adv-h-admission", HOSPITAL, world.hospital_patient)])
    assert status_of(client, who.hospital, world.gp_asthma) == 200  # person A: related
    assert status_of(client, who.hospital, world.other_diabetes) == 404  # person B: not


def test_one_persons_objection_does_not_govern_another_persons_record(
    app: FastAPI, client: TestClient, world: World, who: Callers
) -> None:
    b_hospital = patient(
        "adv-h-b",
        HOSPITAL,
        nhs_number=NUMBER_B,
        family="Adeyemi",
        given="Bola",
        birth_date="1958-11-30",
        gender="male",
    )
    b_condition = condition(
        "Condition/adv-h-b-fracture",
        HOSPITAL,
        "adv-h-b",
        system=SNOMED,
        code="263225007",
        display="Fracture of neck of femur",
    )
    put_all(client, [b_hospital, b_condition])
    dispatch(app)  # identity joins the hospital's record of person B to Riverside's
    assert status_of(client, who.gp_other, "Condition/adv-h-b-fracture") == 200
    # Person A objects to all sharing; person B has not.
    put_all(client, [privacy_consent("Consent/adv-objection", GP, world.gp_patient)])
    assert status_of(client, who.gp_other, "Condition/adv-h-b-fracture") == 200


def test_world_is_what_the_tests_assume(client: TestClient, world: World, who: Callers) -> None:
    """The premises the tests above stand on (a failure here invalidates them, not consent)."""
    everything = visible_to(client, who.integration)
    assert (
        set(world.person_a_shared) | set(world.person_b) | set(world.hidden_from_related_gp)
        <= everything
    )
    assert world.gp_termination not in everything  # never shared, even with a wildcard clause
    labels = client.get(f"/fhir/{world.hospital_hiv}").json()["meta"]["security"]
    assert {"HIV", "V"} <= {label["code"] for label in labels}
    persons = search(client, {}, "Person", link=f"Patient/{world.gp_patient}")
    [person] = [e["resource"] for e in persons["entry"]]
    assert {link["target"]["reference"] for link in person["link"]} == {
        f"Patient/{p}" for p in world.person_a_patients
    }
