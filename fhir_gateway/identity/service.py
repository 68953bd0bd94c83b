"""Identity as a service: link each source Patient to a Person, keep the evidence, queue the
doubtful cases for a human.

Every source Patient has exactly one Person. When a Patient arrives (``link_patient``), its
demographics are compared with the records that share a blocking key, grouped by Person, and:

- it joins the one Person it links to (a ``Person.link`` with an assurance level, and a
  ``Provenance`` naming the matcher, the time and the field-by-field evidence);
- or, when it would join several Persons (it would bridge them), or a rule holds it back, or
  the score is in the review band, it gets a Person of its own and each candidate goes to the
  review queue;
- or it gets a Person of its own.

A Person never holds two different verified NHS numbers: a record whose verified number
differs from one its candidate Person already holds is never linked automatically.

Persons and Provenances are written through the store, in the caller's transaction, so they
are FHIR resources like any other (readable, searchable, with history).
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from fhir_gateway.identity import blocking
from fhir_gateway.identity.demographics import Demographics, from_patient
from fhir_gateway.identity.models import (
    IdentityBlockKey,
    IdentityNameCount,
    IdentityRecord,
    IdentityReview,
    IdentityUnlink,
)
from fhir_gateway.identity.nhs import NHS_NUMBER_SYSTEM, NhsNumber
from fhir_gateway.identity.scoring import (
    DEFAULT_MODEL,
    Match,
    MatchModel,
    NameCounts,
    decide,
    name_values,
    nickname_forms,
)
from fhir_gateway.outcomes import Invalid, NotFound
from fhir_gateway.store import repository, service
from fhir_gateway.validation import agent_who

MATCHER = "carejoin identity matcher"
IDENTITY_SOURCE = "urn:carejoin:identity"
EVIDENCE_EXTENSION = "https://carejoin.example/fhir/StructureDefinition/identity-match-evidence"


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    patient_id: str
    person_id: str
    action: str  # linked | new-person | unchanged | updated
    match: Match | None = None
    reviews: tuple[int, ...] = ()


# -- features as stored ----------------------------------------------------------------


def _dump(features: Demographics) -> str:
    # Built by hand: dataclasses.asdict deep-copies, and was a tenth of a batch link's write.
    nhs = features.nhs
    data = {
        "nhs": None
        if nhs is None
        else {"value": nhs.value, "valid": nhs.valid, "verification": nhs.verification},
        "family": features.family,
        "family_names": sorted(features.family_names),
        "given": features.given,
        "given_names": sorted(features.given_names),
        "birth_date": features.birth_date.isoformat() if features.birth_date else None,
        "sex": features.sex,
        "postcodes": list(features.postcodes),
        "phones": sorted(features.phones),
    }
    return json.dumps(data, sort_keys=True)


def _load(text: str) -> Demographics:
    data = orjson.loads(text)
    nhs = data.get("nhs")
    return Demographics(
        nhs=NhsNumber(**nhs) if nhs else None,
        family=data.get("family"),
        family_names=frozenset(data.get("family_names") or ()),
        given=data.get("given"),
        given_names=frozenset(data.get("given_names") or ()),
        birth_date=date.fromisoformat(data["birth_date"]) if data.get("birth_date") else None,
        sex=data.get("sex"),
        postcodes=tuple(data.get("postcodes") or ()),
        phones=frozenset(data.get("phones") or ()),
    )


# -- Person and Provenance resources ---------------------------------------------------


def _person_resource(
    person_id: str, links: Sequence[tuple[str, str | None]], features: Demographics | None
) -> dict[str, Any]:
    person: dict[str, Any] = {
        "resourceType": "Person",
        "id": person_id,
        "meta": {"source": IDENTITY_SOURCE},
        "active": bool(links),
    }
    if features is not None:
        if features.nhs is not None and features.nhs.verified:
            person["identifier"] = [{"system": NHS_NUMBER_SYSTEM, "value": features.nhs.value}]
        if features.birth_date is not None:
            person["birthDate"] = features.birth_date.isoformat()
        if features.sex is not None:
            person["gender"] = features.sex
    person["link"] = [
        {"target": {"reference": f"Patient/{patient_id}"}, **({"assurance": a} if a else {})}
        for patient_id, a in links
    ]
    if not person["link"]:
        del person["link"]
    return person


def _provenance(
    *,
    person_id: str,
    patient_id: str,
    now: datetime,
    activity: str,
    who: str,
    reason: str,
    match: Match | None,
) -> dict[str, Any]:
    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "meta": {"source": IDENTITY_SOURCE},
        "target": [{"reference": f"Person/{person_id}"}, {"reference": f"Patient/{patient_id}"}],
        "recorded": service.format_instant(now),
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE" if activity != "unlink" else "DELETE",
                }
            ],
            "text": activity,
        },
        "reason": [{"text": reason}],
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler" if who == MATCHER else "verifier",
                        }
                    ]
                },
                "who": agent_who(who),
            }
        ],
        "entity": [{"role": "source", "what": {"reference": f"Patient/{patient_id}"}}],
    }
    if match is not None:
        provenance["extension"] = [
            {
                "url": EVIDENCE_EXTENSION,
                "extension": [
                    {"url": "weight", "valueDecimal": round(match.weight, 3)},
                    {"url": "decision", "valueCode": match.decision},
                    *(
                        {
                            "url": "field",
                            "extension": [
                                {"url": "name", "valueCode": e.field},
                                {"url": "level", "valueCode": e.level},
                                {"url": "weight", "valueDecimal": round(e.weight, 3)},
                                *(
                                    [
                                        {
                                            "url": "frequency",
                                            "valueDecimal": float(f"{e.frequency:.4g}"),
                                        }
                                    ]
                                    if e.frequency is not None
                                    else []
                                ),
                            ],
                        }
                        for e in match.evidence
                    ),
                ],
            }
        ]
    return provenance


def _person_links(session: Session, person_id: str) -> list[tuple[str, str | None]]:
    rows = session.execute(
        select(IdentityRecord.patient_id, IdentityRecord.assurance)
        .where(IdentityRecord.person_id == person_id)
        .order_by(IdentityRecord.pk)
    ).all()
    return [(r.patient_id, r.assurance) for r in rows]


def _write_person(session: Session, person_id: str, now: datetime) -> None:
    """Rewrite the Person from identity's records (its links are the records' person ids).

    Its demographics come from the best record (a verified NHS number first, then the
    oldest): the name as that source recorded it, birth date and sex.
    """
    best = session.execute(
        select(IdentityRecord.patient_id, IdentityRecord.features)
        .where(IdentityRecord.person_id == person_id)
        .order_by(IdentityRecord.nhs_verified.desc(), IdentityRecord.pk)
    ).first()
    features = _load(best.features) if best is not None else None
    resource = _person_resource(person_id, _person_links(session, person_id), features)
    if best is not None:
        source = repository.get_current(session, "Patient", best.patient_id)
        if source is not None and source.body is not None and not source.deleted:
            names = orjson.loads(source.body).get("name")
            if names:
                resource["name"] = names
    service.update(session, "Person", person_id, resource, now=now)


def _record_provenance(
    session: Session,
    *,
    person_id: str,
    patient_id: str,
    now: datetime,
    activity: str,
    who: str,
    reason: str,
    match: Match | None,
) -> None:
    service.create(
        session,
        _provenance(
            person_id=person_id,
            patient_id=patient_id,
            now=now,
            activity=activity,
            who=who,
            reason=reason,
            match=match,
        ),
        now=now,
    )


# -- matching --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    person_id: str
    match: Match
    verified_numbers: frozenset[str]


# -- name counts (term frequencies) -----------------------------------------------------


def _name_rows(features: Demographics | None, sign: int) -> dict[tuple[str, str], int]:
    """The change to the name counts of adding (``sign`` 1) or removing (-1) a record."""
    change: dict[tuple[str, str], int] = defaultdict(int)
    if features is None:
        return change
    for name, value in name_values(features):
        change[name, value[:255]] += sign
        change[name, ""] += sign
    return change


def _count_names(session: Session, old: Demographics | None, new: Demographics | None) -> None:
    """Keep ``identity_name_count`` in step with a record added (``old`` None), changed or
    removed (``new`` None): rows are added, never updated (see ``IdentityNameCount``)."""
    change = _name_rows(old, -1)
    for key, n in _name_rows(new, 1).items():
        change[key] += n
    rows = [{"field": f, "value": v, "n": n} for (f, v), n in sorted(change.items()) if n]
    if rows:
        session.execute(insert(IdentityNameCount), rows)


def _name_count_columns(features: Demographics) -> list[tuple[tuple[str, str], Any]]:
    """Scalar subqueries for the counts matching ``features`` needs: each of its names, and
    each field's total."""
    columns = []
    for name, value in name_values(features):
        for wanted in (value[:255], ""):
            column = (
                select(func.coalesce(func.sum(IdentityNameCount.n), 0))
                .where(IdentityNameCount.field == name, IdentityNameCount.value == wanted)
                .scalar_subquery()
            )
            columns.append(((name, wanted), column))
    return columns


def _name_counts(
    features: Demographics, found: Mapping[tuple[str, str], int], *, plus_probe: bool
) -> NameCounts:
    """The counts as ``scoring`` reads them (``plus_probe``: the probe is not in the index,
    so it is counted as the batch linker counts every record it links)."""
    extra = 1 if plus_probe else 0
    counts: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for name, value in name_values(features):
        counts[name, value] = int(found.get((name, value[:255]), 0)) + extra
        totals[name] = int(found.get((name, ""), 0)) + extra
    return NameCounts(counts, totals)


def name_counts(
    session: Session, features: Demographics, others: Iterable[Demographics] = ()
) -> NameCounts:
    """The index's counts of ``features``' names (the record itself included if filed), and
    of those of ``others``' first names that are forms of its own (``_with_forms``)."""
    columns = _name_count_columns(features)
    if not columns:
        return NameCounts({}, {})
    row = session.execute(select(*(c for _k, c in columns))).one()
    names = _name_counts(
        features, {k: int(v) for (k, _c), v in zip(columns, row, strict=True)}, plus_probe=False
    )
    return _with_forms(session, features, names, others)


def _with_forms(
    session: Session, features: Demographics, names: NameCounts, others: Iterable[Demographics]
) -> NameCounts:
    """``names`` with the index's counts of the first names of ``others`` that the nickname
    data relates to ``features``' first name: ``scoring.own_names`` compares both names'
    counts (the batch linker counts every name). Read only when a candidate has such a name."""
    if features.given is None:
        return names
    forms = nickname_forms(features.given)
    wanted = {
        o.given
        for o in others
        if o.given is not None and o.given in forms and ("given_name", o.given) not in names.counts
    }
    if not wanted:
        return names
    found = dict(
        session.execute(
            select(IdentityNameCount.value, func.sum(IdentityNameCount.n))
            .where(
                IdentityNameCount.field == "given_name",
                IdentityNameCount.value.in_({w[:255] for w in wanted}),
            )
            .group_by(IdentityNameCount.value)
        ).all()
    )
    counts = dict(names.counts)
    counts.update({("given_name", w): int(found.get(w[:255]) or 0) for w in wanted})
    return NameCounts(counts, names.totals)


# Per database: the newest name-count row when a fold last found nothing to fold.
_folded_through: dict[str, int] = {}


def fold_name_counts(session: Session, now: datetime | None = None, *, limit: int = 500) -> int:
    """Fold the rows of up to ``limit`` names into one row each (a name whose count is zero
    loses its rows); returns how many rows went. The dispatcher's deferred work: filing a
    record adds rows, this keeps the sums short. Rows another transaction is folding are
    skipped on PostgreSQL (``SKIP LOCKED``), so two dispatchers never wait on each other."""
    # The dispatcher runs this after every batch and every idle poll: when no row was added
    # since this process last found nothing to fold, there is nothing new (one index probe).
    database = str(session.get_bind().engine.url)
    newest = session.scalar(select(func.max(IdentityNameCount.pk)))
    if newest is None or _folded_through.get(database) == newest:
        return 0
    names = session.execute(
        select(IdentityNameCount.field, IdentityNameCount.value)
        .group_by(IdentityNameCount.field, IdentityNameCount.value)
        .having(func.count() > 1)
        .limit(limit)
    ).all()
    if not names:
        _folded_through[database] = newest
        return 0
    wanted = {(r.field, r.value) for r in names}
    stmt = select(
        IdentityNameCount.pk, IdentityNameCount.field, IdentityNameCount.value, IdentityNameCount.n
    ).where(IdentityNameCount.value.in_({v for _f, v in wanted}))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    sums: dict[tuple[str, str], int] = defaultdict(int)
    rows: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in session.execute(stmt):
        if (row.field, row.value) in wanted:
            sums[row.field, row.value] += row.n
            rows[row.field, row.value].append(row.pk)
    gone = [pk for key, pks in rows.items() if len(pks) > 1 for pk in pks]
    if not gone:
        return 0
    for start in range(0, len(gone), 1000):
        session.execute(
            delete(IdentityNameCount).where(IdentityNameCount.pk.in_(gone[start : start + 1000]))
        )
    kept = [
        {"field": f, "value": v, "n": sums[f, v]}
        for (f, v), pks in sorted(rows.items())
        if len(pks) > 1 and sums[f, v]
    ]
    if kept:
        session.execute(insert(IdentityNameCount), kept)
    return len(gone) - len(kept)


def _record_matches(
    session: Session,
    features: Demographics,
    *,
    exclude_pk: int | None,
    model: MatchModel,
    plus_probe: bool = False,
) -> list[tuple[str, str, Match]]:
    """(patient id, person id, match) for every record sharing a blocking key (blocks too
    large to say anything, ``blocking.MAX_BLOCK``, are skipped unless an NHS number's), names
    weighed by their counts in the index (read in the same statement)."""
    keys = sorted(blocking.probe_keys(features))
    if not keys:
        return []
    count_columns = _name_count_columns(features)
    # The large blocks are counted in the same statement, from the key index alone.
    large = (
        select(IdentityBlockKey.key)
        .where(IdentityBlockKey.key.in_([k for k in keys if not blocking.always_compared(k)]))
        .group_by(IdentityBlockKey.key)
        .having(func.count() > blocking.MAX_BLOCK)
    )
    stmt = (
        select(
            IdentityRecord.patient_id,
            IdentityRecord.person_id,
            IdentityRecord.features,
            *(c for _k, c in count_columns),
        )
        .where(
            IdentityRecord.pk.in_(
                select(IdentityBlockKey.record_pk).where(
                    IdentityBlockKey.key.in_(keys), IdentityBlockKey.key.not_in(large)
                )
            )
        )
        .order_by(IdentityRecord.pk)
    )
    if exclude_pk is not None:
        stmt = stmt.where(IdentityRecord.pk != exclude_pk)
    rows = session.execute(stmt).all()
    if not rows:
        return []
    names = _name_counts(
        features,
        {k: int(v) for (k, _c), v in zip(count_columns, rows[0][3:], strict=True)},
        plus_probe=plus_probe,
    )
    candidates = [_load(row.features) for row in rows]
    names = _with_forms(session, features, names, candidates)
    return [
        (row.patient_id, row.person_id, decide(features, other, model, names))
        for row, other in zip(rows, candidates, strict=True)
    ]


def candidates(
    session: Session,
    features: Demographics,
    *,
    exclude_pk: int | None = None,
    model: MatchModel = DEFAULT_MODEL,
) -> list[Candidate]:
    """Every Person with a record sharing a blocking key, with its best match, best first."""
    best: dict[str, Match] = {}
    for _patient_id, person_id, match in _record_matches(
        session, features, exclude_pk=exclude_pk, model=model
    ):
        current = best.get(person_id)
        if current is None or match.weight > current.weight:
            best[person_id] = match
    if not best:
        return []
    verified: dict[str, set[str]] = defaultdict(set)
    for person_id, number in session.execute(
        select(IdentityRecord.person_id, IdentityRecord.nhs_number).where(
            IdentityRecord.person_id.in_(list(best)),
            IdentityRecord.nhs_verified.is_(True),
        )
    ):
        if number:
            verified[person_id].add(number)
    found = [Candidate(p, m, frozenset(verified[p])) for p, m in best.items()]
    found.sort(key=lambda c: c.match.weight, reverse=True)
    return found


def match_patients(
    session: Session, patient: Mapping[str, Any], *, model: MatchModel = DEFAULT_MODEL
) -> list[tuple[str, str, Match]]:
    """``Patient/$match``: (patient id, person id, match) for the source patients that may be
    ``patient``, most likely first (links and reviews only; a no-link is not a candidate)."""
    features = from_patient(patient)
    found = [
        (patient_id, person_id, match)
        for patient_id, person_id, match in _record_matches(
            session, features, exclude_pk=None, model=model, plus_probe=True
        )
        if match.decision != "no-link"
    ]
    found.sort(key=lambda found: (found[2].weight, found[0]), reverse=True)
    return found


def _verified_numbers(session: Session, person_id: str) -> frozenset[str]:
    """The verified NHS numbers the records of ``person_id`` carry."""
    return frozenset(
        n
        for n in session.scalars(
            select(IdentityRecord.nhs_number).where(
                IdentityRecord.person_id == person_id, IdentityRecord.nhs_verified.is_(True)
            )
        ).all()
        if n
    )


def _held_back(features: Demographics, verified_numbers: frozenset[str]) -> str | None:
    """Why joining a Person holding ``verified_numbers`` must not be automatic."""
    if features.nhs is not None and features.nhs.verified:
        others = verified_numbers - {features.nhs.value}
        if others:
            return "the Person already holds a different verified NHS number"
    return None


def link_patient(
    session: Session,
    patient: Mapping[str, Any],
    *,
    now: datetime,
    model: MatchModel = DEFAULT_MODEL,
) -> LinkOutcome:
    """File a source Patient (new or changed) under a Person."""
    patient_id = str(patient["id"])
    features = from_patient(patient)
    dumped = _dump(features)
    source = (patient.get("meta") or {}).get("source")
    existing = session.execute(
        select(IdentityRecord).where(IdentityRecord.patient_id == patient_id)
    ).scalar_one_or_none()
    survivor = _replaced_by(patient)
    if existing is not None and survivor is not None:
        if existing.features != dumped:
            _refresh(session, existing, features, dumped, source, now)
        return _follow_merge(session, existing, survivor, features, now=now)
    if existing is not None:
        if existing.features == dumped:
            return LinkOutcome(patient_id, existing.person_id, "unchanged")
        _refresh(session, existing, features, dumped, source, now)
        # A record that has a Person to itself may now match someone; one already joined to
        # others stays where it is (a steward moves it if it should go).
        if len(_person_links(session, existing.person_id)) > 1:
            _write_person(session, existing.person_id, now)
            return LinkOutcome(patient_id, existing.person_id, "updated")
        record = existing
    else:
        record = IdentityRecord(
            patient_id=patient_id,
            person_id=service.new_id(),
            source=str(source)[:255] if source else None,
            nhs_number=features.nhs.value if features.nhs else None,
            nhs_verified=bool(features.nhs and features.nhs.verified),
            assurance=None,
            features=dumped,
            updated_at=now,
            linked_at=now,
        )
        session.add(record)
        session.flush()
        _replace_keys(session, record.pk, features)
        _count_names(session, None, features)

    found = candidates(session, features, exclude_pk=record.pk, model=model)
    linkable = [
        c
        for c in found
        if c.match.decision == "link" and not _held_back(features, c.verified_numbers)
    ]
    reviews: list[tuple[Candidate, tuple[str, ...]]] = []
    for c in found:
        held = _held_back(features, c.verified_numbers)
        if c.match.decision == "review" or (c.match.decision == "link" and held):
            reasons = c.match.reasons + ((held,) if held else ())
            reviews.append((c, reasons))
    if len(linkable) > 1:
        bridging = "it would join several Persons; a human decides"
        reviews.extend((c, (*c.match.reasons, bridging)) for c in linkable)
        linkable = []

    old_person = record.person_id
    if linkable:
        chosen = linkable[0]
        record.person_id = chosen.person_id
        record.linked_at = now
        record.assurance = chosen.match.assurance
        session.flush()
        _write_person(session, chosen.person_id, now)
        if existing is not None and old_person != chosen.person_id:
            _write_person(session, old_person, now)
        _record_provenance(
            session,
            person_id=chosen.person_id,
            patient_id=patient_id,
            now=now,
            activity="link",
            who=MATCHER,
            reason="; ".join(chosen.match.reasons) or "demographics and identifiers agree",
            match=chosen.match,
        )
        outcome = LinkOutcome(patient_id, chosen.person_id, "linked", chosen.match)
    else:
        # The Person was made from this record: that link is certain by construction.
        record.assurance = "level4"
        session.flush()
        _write_person(session, record.person_id, now)
        outcome = LinkOutcome(patient_id, record.person_id, "new-person")
    review_pks = tuple(
        _queue_review(session, record.pk, c, reasons, now)
        for c, reasons in reviews
        if c.person_id != record.person_id
    )
    return LinkOutcome(
        outcome.patient_id, outcome.person_id, outcome.action, outcome.match, review_pks
    )


def _replaced_by(patient: Mapping[str, Any]) -> str | None:
    """The survivor a source merged this record into (``Patient.link`` type replaced-by)."""
    for link in patient.get("link") or ():
        if not isinstance(link, Mapping) or link.get("type") != "replaced-by":
            continue
        reference = str((link.get("other") or {}).get("reference") or "")
        if reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def _follow_merge(
    session: Session,
    record: IdentityRecord,
    survivor: str,
    features: Demographics,
    *,
    now: datetime,
) -> LinkOutcome:
    """The source says this record is the survivor's (an HL7 A40 merge): join its Person,
    unless that would give a Person two verified NHS numbers (then a human reviews it)."""
    target = person_of(session, survivor)
    if target is None or target == record.person_id:
        return LinkOutcome(record.patient_id, record.person_id, "unchanged")
    verified = _verified_numbers(session, target)
    held = _held_back(features, verified)
    if held:
        survivor_features = session.scalar(
            select(IdentityRecord.features).where(IdentityRecord.patient_id == survivor)
        )
        assert survivor_features is not None
        survivor_demographics = _load(survivor_features)
        names = name_counts(session, features, (survivor_demographics,))
        candidate = Candidate(
            target, decide(features, survivor_demographics, names=names), verified
        )
        review = _queue_review(
            session, record.pk, candidate, (f"the source merged it: {held}",), now
        )
        return LinkOutcome(record.patient_id, record.person_id, "unchanged", None, (review,))
    move(
        session,
        record,
        target,
        steward=f"source merge ({record.source or 'unknown source'})",
        now=now,
        reason=f"the source merged Patient/{record.patient_id} into Patient/{survivor}",
    )
    return LinkOutcome(record.patient_id, target, "linked")


def _refresh(
    session: Session,
    record: IdentityRecord,
    features: Demographics,
    dumped: str,
    source: Any,
    now: datetime,
) -> None:
    _count_names(session, _load(record.features), features)
    record.features = dumped
    record.nhs_number = features.nhs.value if features.nhs else None
    record.nhs_verified = bool(features.nhs and features.nhs.verified)
    record.source = str(source)[:255] if source else record.source
    record.updated_at = now
    session.flush()
    _replace_keys(session, record.pk, features)


def _replace_keys(session: Session, record_pk: int, features: Demographics) -> None:
    session.execute(delete(IdentityBlockKey).where(IdentityBlockKey.record_pk == record_pk))
    keys = sorted(blocking.stored_keys(features))
    if keys:
        session.add_all(IdentityBlockKey(key=k[:128], record_pk=record_pk) for k in keys)
        session.flush()


def _queue_review(
    session: Session, record_pk: int, candidate: Candidate, reasons: Sequence[str], now: datetime
) -> int:
    existing = session.execute(
        select(IdentityReview.pk).where(
            IdentityReview.record_pk == record_pk,
            IdentityReview.person_id == candidate.person_id,
            IdentityReview.status == "open",
        )
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    review = IdentityReview(
        record_pk=record_pk,
        person_id=candidate.person_id,
        weight=candidate.match.weight,
        probability=candidate.match.probability,
        evidence=json.dumps([e.as_json() for e in candidate.match.evidence]),
        reasons=json.dumps(list(reasons)),
        status="open",
        created_at=now,
    )
    session.add(review)
    session.flush()
    return int(review.pk)


# -- the review queue and stewards' actions --------------------------------------------


def open_reviews(session: Session, *, limit: int = 100) -> list[dict[str, Any]]:
    rows = session.execute(
        select(IdentityReview, IdentityRecord.patient_id, IdentityRecord.person_id)
        .join(IdentityRecord, IdentityRecord.pk == IdentityReview.record_pk)
        .where(IdentityReview.status == "open")
        .order_by(IdentityReview.weight.desc(), IdentityReview.pk)
        .limit(limit)
    ).all()
    return [
        {
            "id": review.pk,
            "patient": f"Patient/{patient_id}",
            "currentPerson": f"Person/{person_id}",
            "candidatePerson": f"Person/{review.person_id}",
            "candidatePatients": [
                f"Patient/{p}" for p, _a in _person_links(session, review.person_id)
            ],
            "weight": round(review.weight, 3),
            "probability": review.probability,
            "evidence": json.loads(review.evidence),
            "reasons": json.loads(review.reasons),
            "created": service.format_instant(review.created_at),
        }
        for review, patient_id, person_id in rows
    ]


def _open_review(session: Session, review_pk: int) -> IdentityReview:
    review = session.get(IdentityReview, review_pk, with_for_update=True)
    if review is None:
        raise NotFound(f"There is no identity review {review_pk}")
    if review.status != "open":
        raise Invalid(f"Identity review {review_pk} was already {review.status}")
    return review


def accept_review(session: Session, review_pk: int, *, steward: str, now: datetime) -> str:
    """A steward confirms the candidate: the record moves to the candidate Person."""
    review = _open_review(session, review_pk)
    record = session.get(IdentityRecord, review.record_pk, with_for_update=True)
    assert record is not None
    if _held_back(_load(record.features), _verified_numbers(session, review.person_id)):
        raise Invalid(
            "The candidate Person holds a different verified NHS number; a Person never holds "
            "two. Correct the NHS number at its source first."
        )
    move(session, record, review.person_id, steward=steward, now=now, reason="review accepted")
    review.status = "accepted"
    review.decided_at = now
    review.decided_by = steward
    session.flush()
    return review.person_id


def reject_review(session: Session, review_pk: int, *, steward: str, now: datetime) -> None:
    review = _open_review(session, review_pk)
    review.status = "rejected"
    review.decided_at = now
    review.decided_by = steward
    session.flush()


def move(
    session: Session,
    record: IdentityRecord,
    person_id: str,
    *,
    steward: str,
    now: datetime,
    reason: str,
) -> None:
    """Move a record to ``person_id`` (a steward's link), rewriting both Persons."""
    old = record.person_id
    record.person_id = person_id
    record.linked_at = now
    record.assurance = "level3"
    session.flush()
    _write_person(session, person_id, now)
    if old != person_id:
        _write_person(session, old, now)
    _record_provenance(
        session,
        person_id=person_id,
        patient_id=record.patient_id,
        now=now,
        activity="link",
        who=steward,
        reason=reason,
        match=None,
    )


def link(
    session: Session,
    patient_id: str,
    other_patient_id: str,
    *,
    steward: str,
    now: datetime,
    reason: str,
) -> str:
    """A steward files ``patient_id`` under the Person of ``other_patient_id`` (reversible by
    ``unlink``); returns that Person's id. Refused when the Person would then hold two
    different verified NHS numbers."""
    records = {
        r.patient_id: r
        for r in session.scalars(
            select(IdentityRecord)
            .where(IdentityRecord.patient_id.in_([patient_id, other_patient_id]))
            .with_for_update()
        ).all()
    }
    for wanted in (patient_id, other_patient_id):
        if wanted not in records:
            raise NotFound(f"Patient/{wanted} is not known to identity")
    record, target = records[patient_id], records[other_patient_id].person_id
    if record.person_id == target:
        raise Invalid(f"Patient/{patient_id} already belongs to Person/{target}")
    verified = _verified_numbers(session, target)
    held = _held_back(_load(record.features), verified)
    if held:
        raise Invalid(f"Patient/{patient_id} cannot join Person/{target}: {held}")
    move(session, record, target, steward=steward, now=now, reason=reason)
    return target


def unlink(session: Session, patient_id: str, *, steward: str, now: datetime, reason: str) -> str:
    """Take a record out of its Person into a Person of its own; returns the new Person's id."""
    record = session.execute(
        select(IdentityRecord).where(IdentityRecord.patient_id == patient_id).with_for_update()
    ).scalar_one_or_none()
    if record is None:
        raise NotFound(f"Patient/{patient_id} is not known to identity")
    old = record.person_id
    if len(_person_links(session, old)) == 1:
        raise Invalid(f"Patient/{patient_id} is the only record of Person/{old}")
    # Kept so that privacy officers can see who viewed the wrongly joined record.
    session.add(
        IdentityUnlink(
            patient_id=patient_id,
            person_id=old,
            joined_at=record.linked_at or record.updated_at,
            unlinked_at=now,
            steward=steward,
            reason=reason,
        )
    )
    record.person_id = service.new_id()
    record.linked_at = now
    record.assurance = "level4"  # it founds the new Person
    session.flush()
    _write_person(session, record.person_id, now)
    _write_person(session, old, now)
    _record_provenance(
        session,
        person_id=old,
        patient_id=patient_id,
        now=now,
        activity="unlink",
        who=steward,
        reason=reason,
        match=None,
    )
    return record.person_id


def forget_patient(session: Session, patient_id: str, *, now: datetime) -> None:
    """A source deleted its Patient: drop it from its Person (history keeps the old links)."""
    record = session.execute(
        select(IdentityRecord).where(IdentityRecord.patient_id == patient_id)
    ).scalar_one_or_none()
    if record is None:
        return
    person_id = record.person_id
    _count_names(session, _load(record.features), None)
    session.delete(record)
    session.flush()
    if _person_links(session, person_id):
        _write_person(session, person_id, now)
    else:
        service.delete(session, "Person", person_id, now=now)


def person_of(session: Session, patient_id: str) -> str | None:
    return session.execute(
        select(IdentityRecord.person_id).where(IdentityRecord.patient_id == patient_id)
    ).scalar_one_or_none()


def patients_of(session: Session, person_id: str) -> list[str]:
    return [p for p, _a in _person_links(session, person_id)]


def joined_patients(session: Session, patient_id: str) -> tuple[str | None, list[str]]:
    """The Person of ``patient_id`` and every source patient it holds, in one query
    (``(None, [patient_id])`` when identity has not filed the patient)."""
    person = (
        select(IdentityRecord.person_id)
        .where(IdentityRecord.patient_id == patient_id)
        .scalar_subquery()
    )
    rows = session.execute(
        select(IdentityRecord.person_id, IdentityRecord.patient_id)
        .where(IdentityRecord.person_id == person)
        .order_by(IdentityRecord.pk)
    ).all()
    if not rows:
        return None, [patient_id]
    return rows[0].person_id, [r.patient_id for r in rows]


__all__ = [
    "LinkOutcome",
    "accept_review",
    "candidates",
    "fold_name_counts",
    "forget_patient",
    "joined_patients",
    "link",
    "link_patient",
    "match_patients",
    "name_counts",
    "open_reviews",
    "patients_of",
    "person_of",
    "reject_review",
    "unlink",
]
