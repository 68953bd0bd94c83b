"""The batch linker's cheap work on many pairs at once, as arrays (numpy).

Linking a population compares millions of candidate pairs, nearly all of them two
different people. Two steps that were a Python loop per pair are array operations here:

- **candidate pairs** (``Blocks.pairs``, for a range of records at a time): every pair of
  records that share a usable blocking key, each pair once, oriented as the linker scores
  it: a record not yet filed against another (a filed record is only ever the other side,
  and of two new records the later one is the one scored);
- **the screen's first fields** (``screen``): NHS number, sex, phone, birth date and
  postcode compared into their levels for every pair, their weights added in
  ``scoring.SCREEN_ORDER``'s order from the prior, the pairs that could not reach the review
  weight whatever the rest added dropped (``scoring.cannot_link``'s rule, at its fifth
  field); then the family name for the pairs left, and the rule again.

What survives goes on to ``scoring.cannot_link`` from the first name on, and to
``scoring.decide``, one pair at a time. The levels are those of ``scoring.COMPARISONS``,
tested pair by pair against them. A pair the arrays cannot compare exactly as the functions
do (a birth year before 1000, whose digits the functions read differently; more phone
numbers, postcodes or family names on one record than the arrays hold) is never dropped
here: it is screened one field at a time like any other.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rapidfuzz.distance import JaroWinkler
from rapidfuzz.process import cpdist

from fhir_gateway.identity import blocking
from fhir_gateway.identity.demographics import Demographics, postcode_sector
from fhir_gateway.identity.scoring import (
    FAMILY_SIMILAR,
    SCREEN_ORDER,
    MatchModel,
    NameCounts,
    screen_steps,
)

Ints = npt.NDArray[np.int64]
Codes = npt.NDArray[np.int32]
Flags = npt.NDArray[np.bool_]
Weights = npt.NDArray[np.float64]

# The fields compared here, in the screen's order; ``screen`` hands the pairs on after them.
# The cheap ones are compared for every pair, the family name for those they leave.
CHEAP = ("nhs_number", "sex", "phone", "birth_date", "postcode")
FIELDS = (*CHEAP, "family_name")
assert SCREEN_ORDER[: len(FIELDS)] == FIELDS
COMPARED = len(FIELDS)

# Phone numbers and postcodes held per record; a record with more is not screened here.
WIDTH = 4
# Pairs compared per round (bounds the memory of the gathered columns).
ROUND = 1 << 18


@dataclass(frozen=True)
class Columns:
    """The records' screened fields, one row per record; -1 is "none" in every code."""

    nhs: Codes
    verified: Flags
    sex: Codes
    phones: Codes  # (records, WIDTH)
    year: Codes
    month: Codes
    day: Codes
    digits: npt.NDArray[np.uint8]  # (records, 8): the birth date as YYYYMMDD
    postcodes: Codes  # (records, WIDTH)
    sectors: Codes  # (records, WIDTH)
    family: Codes  # the current family name
    family_names: Codes  # (records, WIDTH): every family name and part
    family_text: list[str | None]  # the current family name itself
    values: dict[int, str]  # the family names' codes: the names
    exact: Flags  # every field above holds what the comparison functions read


def columns(people: Sequence[Demographics]) -> Columns:
    count = len(people)
    numbers = [person.nhs for person in people]
    births = [person.birth_date for person in people]
    family_codes: dict[str, int] = {}
    postcode_lists = [person.postcodes for person in people]
    yyyymmdd = np.fromiter(
        (0 if b is None else b.year * 10_000 + b.month * 100 + b.day for b in births),
        np.int64,
        count,
    )
    return Columns(
        nhs=_codes([None if n is None else n.value for n in numbers], {}),
        verified=np.fromiter((n is not None and n.verified for n in numbers), np.bool_, count),
        sex=_codes([person.sex for person in people], {}),
        phones=_rows([tuple(person.phones) for person in people], {}),
        year=(yyyymmdd // 10_000).astype(np.int32),
        month=(yyyymmdd // 100 % 100).astype(np.int32),
        day=(yyyymmdd % 100).astype(np.int32),
        # the birth date's eight digits as the functions read them (YYYYMMDD)
        digits=np.stack([(yyyymmdd // 10**k) % 10 for k in range(7, -1, -1)], axis=1).astype(
            np.uint8
        ),
        postcodes=_rows(postcode_lists, {}),
        sectors=_rows([tuple(map(postcode_sector, p)) for p in postcode_lists], {}),
        family=_codes([person.family for person in people], family_codes),
        family_names=_rows([tuple(person.family_names) for person in people], family_codes),
        family_text=[person.family for person in people],
        values={n: name for name, n in family_codes.items()},
        exact=np.fromiter(
            (
                len(person.phones) <= WIDTH
                and len(person.postcodes) <= WIDTH
                and len(person.family_names) <= WIDTH
                # strftime's %Y gives fewer than four digits: the functions compare those
                and (person.birth_date is None or person.birth_date.year >= 1000)
                for person in people
            ),
            np.bool_,
            count,
        ),
    )


def _codes(values: Sequence[str | None], table: dict[str, int]) -> Codes:
    """A code for each value (the same value, the same code, through ``table``); -1 for
    none."""
    return np.fromiter(
        (-1 if v is None else table.setdefault(v, len(table)) for v in values),
        np.int32,
        len(values),
    )


def _rows(lists: Sequence[Sequence[str]], table: dict[str, int]) -> Codes:
    """(records, WIDTH): the codes of each record's first ``WIDTH`` values, -1 after."""
    count = len(lists)
    lengths = np.fromiter((min(len(v), WIDTH) for v in lists), np.int64, count)
    flat = [value for values in lists for value in values[:WIDTH]]
    out = np.full((count, WIDTH), -1, np.int32)
    rows = np.repeat(np.arange(count), lengths)
    within = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[rows, within] = _codes(flat, table)
    return out


class Blocks:
    """The usable blocks of every record's stored keys, as arrays, from which the candidate
    pairs of any range of records are made (``pairs``): every pair (p, q) the linker scores,
    p not filed, q any other record that is filed or comes before p, sharing a key that p
    probes (``keys[p]`` and ``probes[p]``) and q is filed under (``keys[q]``), in a block
    ``blocking.usable`` compares."""

    def __init__(
        self,
        keys: Sequence[frozenset[str]],
        probes: Sequence[Sequence[str]],
        filed: Sequence[bool],
    ):
        self.count = count = len(keys)
        flat = [key for record_keys in keys for key in record_keys]
        key_ids = dict(zip(dict.fromkeys(flat), range(len(flat)), strict=False))
        ek = np.fromiter(map(key_ids.__getitem__, flat), np.int64, len(flat))
        er = np.repeat(np.arange(count, dtype=np.int32), [len(k) for k in keys])
        del flat
        sizes = np.bincount(ek, minlength=len(key_ids))
        usable = sizes <= blocking.MAX_BLOCK
        if not usable.all():
            large = np.flatnonzero(~usable)
            named = list(key_ids)
            usable[large] = [blocking.always_compared(named[k]) for k in large.tolist()]
        self.filed = np.asarray(filed, np.bool_).reshape(count)

        # The records of each usable block side by side, in record order within a block.
        keep = usable[ek]
        ek, er = ek[keep], er[keep]
        order = np.argsort(ek, kind="stable")  # the entries are in record order already
        self.record = er[order]
        self.block = ek[order]
        self.starts = np.zeros(len(key_ids) + 1, np.int64)
        np.cumsum(np.bincount(self.block, minlength=len(key_ids)), out=self.starts[1:])

        # The keys records only probe for (the swapped birth date) that name a usable block.
        probe_record: list[int] = []
        probe_block: list[int] = []
        for i, record_probes in enumerate(probes):
            if record_probes and not filed[i]:
                for key in record_probes:
                    found = key_ids.get(key)
                    if found is not None and usable[found]:
                        probe_record.append(i)
                        probe_block.append(found)
        self.probe_record = np.asarray(probe_record, np.int64)
        self.probe_block = np.asarray(probe_block, np.int64)

    def pairs(self, low: int, high: int) -> tuple[Ints, Ints]:
        """The pairs whose scored record p is ``low`` to ``high`` (excluded), sorted by p then
        q, each once."""
        count, record, starts, filed = self.count, self.record, self.starts, self.filed
        position = np.flatnonzero((record >= low) & (record < high) & ~filed[record])
        block_start = starts[self.block[position]]
        # p with every record before it in the block (q < p) ...
        before = position - block_start
        p = record[np.repeat(position, before)].astype(np.int64)
        q = record[_ranges(block_start, before)]
        codes = [p * count + q]
        del p, q, before
        if filed.any():
            # ... and with every filed record after it (two new records are scored from the
            # later one; a new and a filed one from the new one)
            after = starts[self.block[position] + 1] - position - 1
            p = record[np.repeat(position, after)].astype(np.int64)
            q = record[_ranges(position + 1, after)]
            later_filed = filed[q]
            codes.append(p[later_filed] * count + q[later_filed])
            del p, q
        # ... and with the records of the blocks it only probes for.
        probing = np.flatnonzero((self.probe_record >= low) & (self.probe_record < high))
        if len(probing):
            probed = self.probe_block[probing]
            size = starts[probed + 1] - starts[probed]
            p = np.repeat(self.probe_record[probing], size)
            q = record[_ranges(starts[probed], size)]
            fits = (q != p) & (filed[q] | (q < p))
            codes.append(p[fits] * count + q[fits])
            del p, q
        # Each pair once (a pair shares several keys), sorted by p then q: a sort and a look
        # at the neighbour (numpy's ``unique`` hashes first and took five times as long).
        pair = np.concatenate(codes) if len(codes) > 1 else codes[0]
        del codes
        pair.sort()
        if len(pair):
            first = np.empty(len(pair), np.bool_)
            first[0] = True
            np.not_equal(pair[1:], pair[:-1], out=first[1:])
            pair = pair[first]
        return pair // count, pair % count


def candidate_pairs(
    keys: Sequence[frozenset[str]],
    probes: Sequence[Sequence[str]],
    filed: Sequence[bool],
) -> tuple[Ints, Ints]:
    """Every candidate pair of the records at once (``Blocks``)."""
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return Blocks(keys, probes, filed).pairs(0, len(keys))


def _ranges(starts: Ints, lengths: Ints) -> Ints:
    """``starts[k], starts[k] + 1, ..., starts[k] + lengths[k] - 1`` for every k, joined."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(lengths) - lengths  # where each run begins in the output
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, lengths)


@dataclass(frozen=True)
class Levels:
    """Each pair's level of each field, as an index into ``LEVELS[field]``; -1 is none."""

    nhs_number: Codes
    sex: Codes
    phone: Codes
    birth_date: Codes
    postcode: Codes
    exact: Flags  # the levels are the comparison functions' own


LEVELS = {
    "nhs_number": ("exact", "different"),
    "sex": ("same", "different"),
    "phone": ("exact", "different"),
    "birth_date": ("exact", "typo", "year_month", "different"),
    "postcode": ("exact", "sector", "different"),
    "family_name": ("exact", "other_name", "similar", "different"),
}


def levels(c: Columns, p: Ints, q: Ints) -> Levels:
    """The levels ``scoring.COMPARISONS`` give for each pair (p, q) (where ``exact``)."""
    nhs = _equal_or_none(c.nhs[p], c.nhs[q])
    sex = _equal_or_none(c.sex[p], c.sex[q])
    phone = _shared_or_none(c.phones[p], c.phones[q])

    year_p, year_q = c.year[p], c.year[q]
    month_p, month_q = c.month[p], c.month[q]
    day_p, day_q = c.day[p], c.day[q]
    known = (year_p > 0) & (year_q > 0)
    same_day = (year_p == year_q) & (month_p == month_q) & (day_p == day_q)
    swapped = (year_p == year_q) & (month_p == day_q) & (day_p == month_q)
    digits_p, digits_q = c.digits[p], c.digits[q]
    differs = digits_p != digits_q
    wrong = differs.sum(axis=1)
    # One digit wrong, or two adjacent digits swapped (the dates are 8 digits each, so an
    # optimal string alignment distance of 1 is one or the other).
    adjacent = np.zeros(len(p), np.bool_)
    for k in range(7):
        adjacent |= (
            differs[:, k]
            & differs[:, k + 1]
            & (digits_p[:, k] == digits_q[:, k + 1])
            & (digits_p[:, k + 1] == digits_q[:, k])
        )
    typo = swapped | (wrong == 1) | ((wrong == 2) & adjacent)
    year_month = (year_p == year_q) & (month_p == month_q)
    birth = np.select([~known, same_day, typo, year_month], [-1, 0, 1, 2], default=3).astype(
        np.int32
    )

    postcodes = _shared_or_none(c.postcodes[p], c.postcodes[q])
    sectors = _shared_or_none(c.sectors[p], c.sectors[q])
    postcode = np.where(postcodes == 1, sectors + 1, postcodes).astype(np.int32)
    return Levels(nhs, sex, phone, birth, postcode, c.exact[p] & c.exact[q])


def family_levels(c: Columns, p: Ints, q: Ints) -> Codes:
    """``scoring.compare_family``'s level of each pair (p, q), as ``LEVELS`` codes: the
    same name, another of their names in common, Jaro-Winkler similar (rapidfuzz, on the
    pairs that need it only), different; -1 where either has none."""
    family_p, family_q = c.family[p], c.family[q]
    level = np.full(len(p), 3, np.int32)
    level[(family_p < 0) | (family_q < 0)] = -1
    known = level == 3
    other = (_shared_or_none(c.family_names[p], c.family_names[q]) == 0) & known
    level[other] = 1
    level[known & (family_p == family_q)] = 0
    undecided = np.flatnonzero(level == 3)
    if len(undecided):
        similarity = cpdist(
            [c.family_text[i] for i in p[undecided].tolist()],
            [c.family_text[j] for j in q[undecided].tolist()],
            scorer=JaroWinkler.similarity,
            dtype=np.float64,
        )
        level[undecided[similarity >= FAMILY_SIMILAR]] = 2
    return level


def _equal_or_none(a: Codes, b: Codes) -> Codes:
    """0 (equal), 1 (different) or -1 (either none)."""
    return np.where((a < 0) | (b < 0), -1, np.where(a == b, 0, 1)).astype(np.int32)


def _shared_or_none(a: Codes, b: Codes) -> Codes:
    """0 (a value in common), 1 (none in common) or -1 (either has none); rows of codes."""
    shared = np.zeros(len(a), np.bool_)
    for x in range(a.shape[1]):
        column = a[:, x]
        present = column >= 0
        for y in range(b.shape[1]):
            shared |= present & (column == b[:, y])
    empty = (a[:, 0] < 0) | (b[:, 0] < 0)
    return np.where(empty, -1, np.where(shared, 0, 1)).astype(np.int32)


@dataclass(frozen=True)
class Survivors:
    """The pairs ``screen`` could not rule out, and how far each was compared."""

    p: Ints
    q: Ints
    compared: Codes  # fields of SCREEN_ORDER already compared (COMPARED, or 0)
    weight: Weights  # the weight they came to, the prior included

    @staticmethod
    def joined(parts: Sequence["Survivors"]) -> "Survivors":
        if not parts:
            empty = np.zeros(0, np.int64)
            return Survivors(empty, empty, np.zeros(0, np.int32), np.zeros(0))
        return Survivors(
            np.concatenate([s.p for s in parts]),
            np.concatenate([s.q for s in parts]),
            np.concatenate([s.compared for s in parts]),
            np.concatenate([s.weight for s in parts]),
        )


def screen(
    c: Columns, p: Ints, q: Ints, model: MatchModel, names: NameCounts | None = None
) -> Survivors:
    """The pairs that may still reach the review weight after the fields compared here
    (and those with one verified NHS number on both, which are never screened), with their
    weight so far; a pair not compared exactly here comes back with nothing compared.
    ``names``: as for ``scoring.cannot_link`` (the same family name weighed by how common
    it is)."""
    prior, floor, steps = screen_steps(model)
    assert tuple(step[0] for step in steps[:COMPARED]) == FIELDS
    if set(CHEAP) & set(model.tf_fields):
        # weighed by frequency: not what these arrays compare
        return Survivors(p, q, np.zeros(len(p), np.int32), np.full(len(p), prior))
    by_level = {
        name: np.array([step[2][label] for label in LEVELS[name]] + [0.0])  # -1: none, 0.0
        for name, step in zip(FIELDS, steps, strict=False)
    }
    # exact agreement on a family name, weighed as ``cannot_link`` weighs it
    same_family = np.zeros(int(c.family.max(initial=-1)) + 2)  # [-1]: none, unused
    for value_code in np.unique(c.family[c.family >= 0]).tolist():
        value = c.values[value_code]
        same_family[value_code] = (
            names.evidence(model, "family_name", value).weight
            if names is not None and "family_name" in model.tf_fields
            else by_level["family_name"][0]
        )
    parts: list[Survivors] = []
    for start in range(0, len(p), ROUND):
        rp, rq = p[start : start + ROUND], q[start : start + ROUND]
        found = levels(c, rp, rq)
        weight = np.full(len(rp), prior)
        for name in CHEAP:
            weight = weight + by_level[name][getattr(found, name)]
        same_verified = (found.nhs_number == 0) & c.verified[rp] & c.verified[rq]
        # Screened after the cheap fields (``cannot_link``'s check at its fifth field) ...
        keep = ~(weight + steps[len(CHEAP) - 1][4] < floor) | same_verified | ~found.exact
        # ... and, for those left that were compared exactly, after the family name.
        named = np.flatnonzero(keep & found.exact)
        family = family_levels(c, rp[named], rq[named])
        added = np.where(
            family == 0, same_family[c.family[rp[named]]], by_level["family_name"][family]
        )
        weight[named] = weight[named] + added
        keep[named] = ~(weight[named] + steps[COMPARED - 1][4] < floor) | same_verified[named]
        compared = np.where(found.exact, COMPARED, 0).astype(np.int32)
        weight = np.where(found.exact, weight, prior)
        parts.append(Survivors(rp[keep], rq[keep], compared[keep], weight[keep]))
    return Survivors.joined(parts)
