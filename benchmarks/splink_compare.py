"""Identity against Splink 5 on the same synthetic files in the same run.

    python -m benchmarks.splink_compare --people 10000 --seeds 2 3

For each seed the population (``identity_population``) is generated once; the same records
go to our batch linker in memory (``identity_accuracy.measure``), to the NHS-number-only
baseline and to a Splink 5 model on DuckDB (``pip install '.[bench]'``). Splink is trained
on each seed's own records, as it would be in use (u by random sampling, the prior from the
NHS number, m by expectation maximisation: all unsupervised); the one supervised choice, the
match-probability threshold, is the one that maximises pairwise F1 on seed 1 (the tuning
seed, always run first) and is then applied unchanged to the other seeds. Splink's pairs
are clustered with ``cluster_pairwise_predictions_at_threshold`` and scored exactly as
ours: every pair of records within a cluster against every pair of records of one person.

Both methods see the same normalised values (``fhir_gateway.identity.demographics``): an NHS
number whose check digit fails is absent for both, names are folded, postcodes and phone
numbers normalised. Splink's comparisons and blocking rules mirror what our matcher looks at
(nicknames from the same data set, the maiden or old family name, a day and month swapped,
the same blocking keys with the same blocks skipped as too large), so the difference is the
model, not the information.
"""

import argparse
import contextlib
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import splink
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from nicknames import NickNamer
from splink import DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_rule_library import CustomRule

from benchmarks.common import machine
from benchmarks.identity_accuracy import _pairs, _prf, hard_cases, measure
from benchmarks.identity_population import VERSIONS, population
from fhir_gateway.identity import blocking
from fhir_gateway.identity.blocking import _sound  # the sound our blocking keys use
from fhir_gateway.identity.demographics import Demographics, from_patient

TUNING_SEED = 1
# Pairs below this probability are never kept from prediction (the threshold search starts
# here; a chosen threshold at this floor would be reported as such).
PROBABILITY_FLOOR = 0.001

Pair = tuple[int, int]

_nicknames = NickNamer()


# -- the records as a table ------------------------------------------------------------------


def _given_variants(given: str) -> list[str]:
    """The name and the fuller names it is a short form of (Bill: William, Robert).

    Two first names are variants when these lists share a name, or one is a listed nickname
    of the other: the same rule and data set (``nicknames``) as our matcher, which counts a
    shared "canonical" only when it is the fuller name, so Robert and William do not meet
    through Bill."""
    size = len(_nicknames.nicknames_of(given))
    fuller = {c for c in _nicknames.canonicals_of(given) if len(_nicknames.nicknames_of(c)) > size}
    return sorted({given} | fuller)


def _spaced(postcode: str) -> str:
    return f"{postcode[:-3]} {postcode[-3:]}"


def usable_keys(people: Sequence[Demographics]) -> list[list[str]]:
    """Each record's blocking keys (``fhir_gateway.identity.blocking``) whose blocks our
    matcher compares: a block larger than ``blocking.MAX_BLOCK`` is skipped unless it is an
    NHS number's. Splink blocks on these, so both score the same candidate pairs."""
    stored = [blocking.stored_keys(person) for person in people]
    sizes = Counter(key for keys in stored for key in keys)
    return [sorted(k for k in keys if blocking.usable(k, sizes[k])) for keys in stored]


def row(
    unique_id: int, patient: dict[str, Any], person: Demographics, block_keys: list[str]
) -> dict[str, Any]:
    """One Patient as a flat row for Splink, normalised as our matcher normalises it."""
    nhs = person.nhs  # the verified number, else a valid one; a mistyped one is absent
    born = person.birth_date
    postcode = person.postcodes[0] if person.postcodes else None
    return {
        "unique_id": unique_id,
        "source": str((patient.get("meta") or {}).get("source", "")).rsplit(":", 1)[-1],
        "nhs_number": nhs.value if nhs else None,
        "nhs_verified": bool(nhs and nhs.verified),
        "first_name": person.given,
        "given_variants": _given_variants(person.given) if person.given else None,
        "given_nicknames": sorted(_nicknames.nicknames_of(person.given)) if person.given else None,
        "given_sound": _sound(person.given) if person.given else None,
        "first_initial": person.given[0] if person.given else None,
        "surname": person.family,
        "family_names": sorted(person.family_names) or None,
        "family_sounds": sorted({_sound(n) for n in person.family_names}) or None,
        "dob": born.isoformat() if born else None,
        "dob_swapped": (
            born.replace(month=born.day, day=born.month).isoformat()
            if born and born.day <= 12 and born.day != born.month
            else None
        ),
        "birth_year": born.year if born else None,
        "sex": person.sex,
        "postcode": _spaced(postcode) if postcode else None,
        "postcode_sector": _spaced(postcode)[:-2] if postcode else None,
        "postcode_district": _spaced(postcode).split(" ")[0] if postcode else None,
        "phone": min(person.phones) if person.phones else None,
        "block_keys": block_keys or None,
    }


_SCHEMA = pa.schema(
    [
        ("unique_id", pa.int64()),
        ("source", pa.string()),
        ("nhs_number", pa.string()),
        ("nhs_verified", pa.bool_()),
        ("first_name", pa.string()),
        ("given_variants", pa.list_(pa.string())),
        ("given_nicknames", pa.list_(pa.string())),
        ("given_sound", pa.string()),
        ("first_initial", pa.string()),
        ("surname", pa.string()),
        ("family_names", pa.list_(pa.string())),
        ("family_sounds", pa.list_(pa.string())),
        ("dob", pa.string()),
        ("dob_swapped", pa.string()),
        ("birth_year", pa.int64()),
        ("sex", pa.string()),
        ("postcode", pa.string()),
        ("postcode_sector", pa.string()),
        ("postcode_district", pa.string()),
        ("phone", pa.string()),
        ("block_keys", pa.list_(pa.string())),
    ]
)


# -- the Splink model --------------------------------------------------------------------------


def settings() -> SettingsCreator:
    nhs = cl.CustomComparison(
        [
            cll.NullLevel("nhs_number"),
            cll.CustomLevel(
                "nhs_number_l = nhs_number_r AND nhs_verified_l AND nhs_verified_r",
                "same verified NHS number",
            ),
            cll.ExactMatchLevel("nhs_number"),
            cll.CustomLevel(
                "nhs_number_l <> nhs_number_r AND nhs_verified_l AND nhs_verified_r",
                "different verified NHS numbers",
            ),
            cll.ElseLevel(),
        ],
        output_column_name="nhs_number",
    )
    first_name = cl.CustomComparison(
        [
            cll.NullLevel("first_name"),
            cll.ExactMatchLevel("first_name", term_frequency_adjustments=True),
            cll.CustomLevel(
                "list_has_any(given_variants_l, given_variants_r)"
                " OR list_contains(given_nicknames_l, first_name_r)"
                " OR list_contains(given_nicknames_r, first_name_l)",
                "nickname or name variant",
            ),
            cll.JaroWinklerLevel("first_name", 0.92),
            cll.JaroWinklerLevel("first_name", 0.88),
            cll.JaroWinklerLevel("first_name", 0.7),
            cll.ElseLevel(),
        ],
        output_column_name="first_name",
    )
    surname = cl.CustomComparison(
        [
            cll.NullLevel("surname"),
            cll.ExactMatchLevel("surname", term_frequency_adjustments=True),
            cll.ArrayIntersectLevel("family_names", 1).configure(
                label_for_charts="a maiden, old or hyphen-part name agrees"
            ),
            cll.JaroWinklerLevel("surname", 0.92),
            cll.JaroWinklerLevel("surname", 0.88),
            cll.JaroWinklerLevel("surname", 0.7),
            cll.ElseLevel(),
        ],
        output_column_name="surname",
    )
    dob = cl.CustomComparison(
        [
            cll.NullLevel("dob"),
            cll.ExactMatchLevel("dob"),
            cll.CustomLevel("dob_l = dob_swapped_r", "day and month swapped"),
            cll.DamerauLevenshteinLevel("dob", 1),
            # Splink's DateOfBirthComparison also has levels within a month, a year and ten
            # years. Past one wrong digit, two records of one person here are never that
            # close, so those levels' m cannot be estimated (Splink would fall back on
            # defaults); on the tuning seed "within a year" weighed exactly as "else".
            cll.ElseLevel(),
        ],
        output_column_name="dob",
    )
    # Address and phone are household facts, so they are strongly correlated: two people of
    # one household agree on both. As two comparisons they would count that agreement twice
    # (the independence assumption); as one, each combination gets its own m and u. Every
    # postcode here is in one area (LS), so the library's area level would tell nothing.
    household = cl.CustomComparison(
        [
            cll.And(cll.NullLevel("postcode"), cll.NullLevel("phone")),
            cll.And(cll.ExactMatchLevel("postcode"), cll.ExactMatchLevel("phone")),
            cll.ExactMatchLevel("postcode"),
            cll.ExactMatchLevel("phone"),
            cll.ExactMatchLevel("postcode_sector"),
            cll.ExactMatchLevel("postcode_district"),
            cll.ElseLevel(),
        ],
        output_column_name="postcode_phone",
    )
    return SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            nhs,
            first_name,
            surname,
            dob,
            cl.ExactMatch("sex"),
            household,
        ],
        # Our matcher's blocking keys (fhir_gateway/identity/blocking.py), the blocks it skips
        # as too large left out, and its one probe-only key (the swapped birth date).
        blocking_rules_to_generate_predictions=[
            block_on("block_keys", arrays_to_explode=["block_keys"]),
            CustomRule("l.dob = r.dob_swapped"),
            CustomRule("l.dob_swapped = r.dob"),
        ],
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        max_iterations=50,
    )


def _nhs_recall_estimate(rows: Sequence[dict[str, Any]]) -> float:
    """The share of true pairs an exact NHS number finds, from the data alone: both records
    must carry a valid number."""
    present = sum(1 for r in rows if r["nhs_number"]) / len(rows)
    return present * present


def train(linker: Linker, rows: Sequence[dict[str, Any]]) -> None:
    linker.training.estimate_probability_two_random_records_match(
        [block_on("nhs_number")], recall=_nhs_recall_estimate(rows)
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    for rule in (
        block_on("nhs_number"),  # m of every comparison but the NHS number
        # m of the NHS number. Not on the birth date alone: twins (one birth date, family,
        # address and phone) would be learnt as matches with different NHS numbers; with
        # the first name they are left out.
        block_on("first_name", "dob"),
    ):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)


def _status_mib(field: str) -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return None


class _Peak:
    """Peak resident memory of this process within a block, and how far above the resident
    memory at its start (the population, held by every method), in MiB; Linux only."""

    def __enter__(self) -> "_Peak":
        self.peak: float | None = None
        self.start = _status_mib("VmRSS")
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM)
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = _status_mib("VmHWM")

    def __str__(self) -> str:
        if self.peak is None or self.start is None:
            return "n/a"
        return f"{self.peak:,.0f} MiB (+{self.peak - self.start:,.0f})"


class SplinkRun:
    """One Splink model on one seed's records: trained, then predicting, then clustering."""

    def __init__(self, rows: Sequence[dict[str, Any]], memory_limit: str | None = None):
        self.seconds: dict[str, float] = {}
        if memory_limit:
            # DuckDB spills to disk beyond the limit (a million people's pairs)
            connection = duckdb.connect(
                config={"memory_limit": memory_limit, "temp_directory": "/tmp/splink-spill"}
            )
            db = DuckDBAPI(connection)
        else:
            db = DuckDBAPI()
        table = db.register(pa.Table.from_pylist(list(rows), schema=_SCHEMA), table_name="records")
        self.linker = Linker(table, settings(), log_level=logging.WARNING)
        began = time.perf_counter()
        train(self.linker, rows)
        self.seconds["train"] = time.perf_counter() - began
        began = time.perf_counter()
        self.predictions = self.linker.inference.predict(
            threshold_match_probability=PROBABILITY_FLOOR
        )
        self.seconds["predict"] = time.perf_counter() - began

    def scored(self) -> list[tuple[int, int, float]]:
        """The predicted pairs (at or above the floor) with their match probability."""
        relation = self.predictions.as_duckdbpyrelation()
        edges = relation.project("unique_id_l, unique_id_r, match_probability").fetchall()
        return [(int(a), int(b), float(p)) for a, b, p in edges]

    def pairs_scored(self) -> int:
        blocked = self.linker.inference.compute_blocked_pairs_for_predict()
        return int(blocked.as_duckdbpyrelation().count("*").fetchall()[0][0])

    def cluster(self, threshold: float) -> dict[int, int]:
        """The cluster of every record, by Splink's connected components at ``threshold``."""
        began = time.perf_counter()
        clustered = self.linker.clustering.cluster_pairwise_predictions_at_threshold(
            self.predictions, threshold_match_probability=threshold
        )
        relation = clustered.as_duckdbpyrelation().project("unique_id, cluster_id")
        clusters = {int(uid): int(cid) for uid, cid in relation.fetchall()}
        self.seconds["cluster"] = time.perf_counter() - began
        return clusters

    def weights(self) -> list[str]:
        """The trained model, a line per comparison: each level's match weight."""
        model = self.linker.misc.save_model_to_json()
        lines = [
            f"prior (probability two random records match) {model['probability_two_random_records_match']:.3g}"
        ]
        for comparison in model["comparisons"]:
            levels = []
            for level in comparison["comparison_levels"]:
                if level.get("is_null_level"):
                    continue
                m, u = level.get("m_probability"), level.get("u_probability")
                weight = f"{math.log2(m / u):+.1f}" if m and u else "n/a"
                levels.append(f"{level.get('label_for_charts', '?')} {weight}")
            lines.append(f"{comparison['output_column_name']}: " + "; ".join(levels))
        return lines


# -- choosing the threshold --------------------------------------------------------------------


def best_threshold(
    keys: Sequence[str], scored: Sequence[tuple[int, int, float]]
) -> tuple[float, float]:
    """The match-probability threshold whose connected components have the highest pairwise
    F1, found in one pass: edges are added strongest first with union-find, counting the
    pairs each merge creates and how many of them are true."""
    true_pairs = sum(n * (n - 1) // 2 for n in Counter(keys).values())
    parent = list(range(len(keys)))
    members: list[Counter[str]] = [Counter([k]) for k in keys]
    size = [1] * len(keys)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    predicted = correct = 0
    best = (0.0, 1.0)
    ordered = sorted(scored, key=lambda e: -e[2])
    for n, (a, b, p) in enumerate(ordered):
        ra, rb = find(a), find(b)
        if ra != rb:
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            predicted += size[ra] * size[rb]
            correct += sum(members[ra][k] * c for k, c in members[rb].items())
            parent[rb] = ra
            size[ra] += size[rb]
            members[ra].update(members[rb])
            members[rb] = Counter()
        if n + 1 < len(ordered) and ordered[n + 1][2] == p:
            continue  # a threshold keeps every edge of equal probability
        precision = correct / predicted if predicted else 1.0
        recall = correct / true_pairs
        f1 = 2 * precision * recall / (precision + recall) if correct else 0.0
        if f1 > best[0]:
            best = (f1, p)
    return best[1], best[0]


# -- reporting ---------------------------------------------------------------------------------


def _groups(clusters: dict[int, int]) -> dict[object, set[int]]:
    groups: dict[object, set[int]] = defaultdict(set)
    for record, cluster in clusters.items():
        groups[cluster].add(record)
    return groups


def _missed_because(people: Sequence[Demographics], missed: set[Pair]) -> dict[str, int]:
    """What differs between the two records of each missed true pair (a pair may count
    under several headings)."""
    reasons: Counter[str] = Counter()
    for i, j in missed:
        a, b = people[i], people[j]
        if a.nhs is None or b.nhs is None:
            reasons["an NHS number missing"] += 1
        if a.family != b.family:
            reasons["family name differs"] += 1
        if a.given != b.given:
            reasons["first name differs"] += 1
        if a.birth_date != b.birth_date:
            reasons["birth date differs"] += 1
        if a.postcodes[:1] != b.postcodes[:1]:
            reasons["postcode differs"] += 1
    return dict(reasons.most_common())


def _line(name: str, truth: set[Pair], linked: set[Pair], keys: Sequence[str], secs: str) -> str:
    precision, recall, f1 = _prf(truth, linked)
    twins, babies = hard_cases(keys, linked)
    return (
        f"| {name} | {precision:.4f} | {recall:.4f} | {f1:.4f} | {len(linked - truth):,} "
        f"| {len(truth - linked):,} | {twins} | {babies} | {secs} |"
    )


def compare(
    people: int,
    seed: int,
    threshold: float | None,
    version: int = 2,
    memory_limit: str | None = None,
) -> float:
    """Every method on one seed's records; the Splink threshold chosen (on the tuning seed)
    or used."""
    keys, patients = (list(x) for x in zip(*population(people, seed, version=version), strict=True))
    demographics = [from_patient(p) for p in patients]
    rows = [
        row(i, p, d, k)
        for i, (p, d, k) in enumerate(
            zip(patients, demographics, usable_keys(demographics), strict=True)
        )
    ]
    label = "tuning" if threshold is None else "reporting"
    print(f"\n## people {people:,}, seed {seed} ({label}): {len(rows):,} records")

    with _Peak() as ours_peak:
        ours = measure(keys, patients)
    del patients  # the Patient resources are not needed again (a million people's are GBs)
    with _Peak() as splink_peak:
        model = SplinkRun(rows, memory_limit)
        scored = model.scored()
        began = time.perf_counter()
        best, best_f1 = best_threshold(keys, scored)
        search = time.perf_counter() - began
        if threshold is None:
            threshold = best
            print(f"threshold chosen: match probability >= {threshold:.6g} (F1 {best_f1:.4f})")
        else:
            print(
                f"threshold from seed {TUNING_SEED}: {threshold:.6g}; the best on this seed "
                f"would have been {best:.6g} (F1 {best_f1:.4f}), not used"
            )
        clusters = model.cluster(threshold)
    print(f"threshold search {search:.1f} s (not counted in Splink's time)")

    truth = ours.truth
    splink_linked = _pairs(_groups(clusters))
    sizes = Counter(Counter(clusters.values()).values())
    print(f"splink clusters by size: {dict(sorted(sizes.items()))}")
    s = model.seconds
    splink_secs = (
        f"{s['train'] + s['predict'] + s['cluster']:.1f} (train {s['train']:.1f}, "
        f"predict {s['predict']:.1f}, cluster {s['cluster']:.1f})"
    )
    our_secs = f"{ours.figures['link_seconds']:.1f}"
    print(
        f"true pairs {len(truth):,}; pairs scored: ours {int(ours.figures['pairs_scored']):,}, "
        f"splink {model.pairs_scored():,}; peak RSS: ours {ours_peak}, splink {splink_peak}"
    )
    f = ours.figures
    print(
        f"ours: reviews {int(f['reviews']):,} ({int(f['records_in_review']):,} records, "
        f"{f['records_in_review'] / len(rows):.2%}; {int(f['reviews_of_one_person']):,} of "
        f"one person); twins {int(f['twins_wrongly_linked_pairs'])}, babies "
        f"{int(f['babies_wrongly_linked_pairs'])}"
    )
    print()
    print(
        "| method | precision | recall | F1 | false-positive pairs | false-negative pairs "
        "| twin pairs linked | baby-parent pairs linked | seconds |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(_line("ours (batch linker, in memory)", truth, ours.linked, keys, our_secs))
    print(_line(f"Splink {splink.__version__}", truth, splink_linked, keys, splink_secs))
    print(_line("NHS number alone", truth, ours.nhs_only, keys, ""))
    print()
    for name, linked in (("ours", ours.linked), ("splink", splink_linked)):
        print(f"missed pairs, {name}: {_missed_because(demographics, truth - linked)}")
    if label == "tuning":
        print("\nSplink's trained match weights (this seed):")
        for line in model.weights():
            print(f"  {line}")
    return threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--population-version", type=int, default=2, choices=sorted(VERSIONS))
    parser.add_argument(
        "--threshold",
        type=float,
        help="use this Splink threshold (chosen on seed 1 in an earlier run) and skip seed 1",
    )
    parser.add_argument(
        "--duckdb-memory",
        help="a memory limit for Splink's DuckDB, which then spills to disk (for example 8GB)",
    )
    args = parser.parse_args()
    version = args.population_version
    print(
        f"machine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; "
        f"population {VERSIONS[version]}; splink {splink.__version__}"
    )
    threshold = args.threshold
    if threshold is None:
        threshold = compare(args.people, TUNING_SEED, None, version, args.duckdb_memory)
    for seed in args.seeds:
        if seed != TUNING_SEED:
            compare(args.people, seed, threshold, version, args.duckdb_memory)


if __name__ == "__main__":
    main()
