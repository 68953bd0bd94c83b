"""Transaction (all or nothing) and batch (each on its own) bundles."""

from fastapi.testclient import TestClient

from tests.factories import fhir


def test_transaction_resolves_urn_uuid_and_orders_response(client: TestClient) -> None:
    patient_url = "urn:uuid:6f1c2d0e-0000-4000-8000-000000000001"
    bundle = fhir.transaction(
        fhir.post_entry(fhir.observation(patient_id="x", subject={"reference": patient_url})),
        fhir.post_entry(fhir.patient(), full_url=patient_url),
        fhir.put_entry(fhir.patient(id="known-1", nhs_number="9990000034")),
        {"request": {"method": "GET", "url": "Patient?identifier=9990000034"}},
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created", "200 OK"]
    observation = body["entry"][0]["resource"]
    patient_id = body["entry"][1]["resource"]["id"]
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"
    assert body["entry"][3]["resource"]["total"] == 1  # GET runs after the writes


def test_transaction_is_all_or_nothing(client: TestClient) -> None:
    good = fhir.put_entry(fhir.patient(id="tx-good"))
    bad = fhir.post_entry({"resourceType": "Observation", "status": "final"})  # no code
    response = client.post("/fhir", json=fhir.transaction(good, bad))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"][0].startswith("Bundle.entry[1].resource")
    assert client.get("/fhir/Patient/tx-good").status_code == 404


def test_transaction_conditional_create_and_idempotent_resend(client: TestClient) -> None:
    entry = fhir.post_entry(
        fhir.patient(nhs_number="9990000042"), ifNoneExist=f"identifier={fhir.NHS}|9990000042"
    )
    first = client.post("/fhir", json=fhir.transaction(entry)).json()
    second = client.post("/fhir", json=fhir.transaction(entry)).json()
    assert first["entry"][0]["response"]["status"] == "201 Created"
    assert second["entry"][0]["response"]["status"] == "200 OK"
    assert first["entry"][0]["resource"]["id"] == second["entry"][0]["resource"]["id"]


def test_transaction_rejects_duplicate_targets_and_if_match(client: TestClient) -> None:
    twice = fhir.transaction(
        fhir.put_entry(fhir.patient(id="dup")), fhir.put_entry(fhir.patient(id="dup"))
    )
    assert client.post("/fhir", json=twice).status_code == 400
    client.put("/fhir/Patient/v1", json=fhir.patient(id="v1"))
    stale = fhir.transaction(fhir.put_entry(fhir.patient(id="v1", gender="male"), ifMatch='W/"9"'))
    assert client.post("/fhir", json=stale).status_code == 412
    assert client.get("/fhir/Patient/v1").json()["gender"] == "female"


def test_batch_entries_succeed_or_fail_independently(client: TestClient) -> None:
    bundle = fhir.transaction(
        fhir.put_entry(fhir.patient(id="batch-ok")),
        fhir.post_entry({"resourceType": "Observation", "status": "final"}),
        {"request": {"method": "GET", "url": "Patient/batch-missing"}},
        kind="batch",
    )
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"] == "404"
    assert client.get("/fhir/Patient/batch-ok").status_code == 200


def test_bundle_shape_errors(client: TestClient) -> None:
    assert (
        client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}).status_code
        == 400
    )
    assert client.post("/fhir", json=fhir.patient()).status_code == 400
    no_request = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": fhir.patient()}],
    }
    assert client.post("/fhir", json=no_request).status_code == 400


def test_a_long_bundle_validates_repeated_elements_once_with_the_same_verdicts(
    client: TestClient,
) -> None:
    """A bundle of MEMO_FROM entries or more validates with an element memo: its repeated
    elements (code, subject, category ...) are built once, and every verdict is the same."""
    from unittest import mock

    from fhir_gateway.store.transaction import MEMO_FROM
    from fhir_gateway.validation import ElementMemo

    observations = [
        fhir.observation(patient_id="memo-p", value=70 + n, id=f"memo-{n}")
        for n in range(MEMO_FROM + 2)
    ]
    bad = dict(observations[-1], status="finished")
    bad["code"] = dict(bad["code"], coding="not a list")  # the same element, now invalid
    entries = [fhir.put_entry(o) for o in observations[:-1]] + [fhir.put_entry(bad)]
    seen: list[ElementMemo] = []
    original = ElementMemo.validate

    def spy(self: ElementMemo, model: object, data: dict) -> None:
        seen.append(self)
        original(self, model, data)

    with mock.patch.object(ElementMemo, "validate", spy):
        response = client.post("/fhir", json=fhir.transaction(*entries))
    assert response.status_code == 400
    paths = {issue["expression"][0] for issue in response.json()["issue"]}
    last = f"Bundle.entry[{len(entries) - 1}].resource"
    assert paths == {f"{last}.status", f"{last}.code.coding"}
    assert client.get("/fhir/Observation/memo-0").status_code == 404  # nothing stored
    assert len(seen) == len(entries)
    assert len({id(memo) for memo in seen}) == 1  # one memo for the bundle
    assert seen[0].hits > 0

    response = client.post("/fhir", json=fhir.transaction(*entries[:-1]))
    assert response.status_code == 200, response.text
    for n in range(MEMO_FROM + 1):
        stored = client.get(f"/fhir/Observation/memo-{n}").json()
        assert stored["valueQuantity"]["value"] == 70 + n
