"""Identity's accuracy on the frozen hard-case population (``identity_population``):
pairwise precision, recall and F1 of the batch linker (the same rules as every link), the
NHS-number-only baseline, the hard cases one by one, and the in-memory link time.

    python -m benchmarks.identity_accuracy --people 100000 --seeds 2 3
    python -m benchmarks.identity_accuracy --people 1000000 --seeds 2 3 --population-version 3

No database: this measures the rules and the clustering. Seed 1 is the tuning seed.
"""

import argparse
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import combinations
from typing import Any, NamedTuple

from benchmarks.common import machine
from benchmarks.identity_population import VERSIONS, population
from fhir_gateway.identity.batch import plan_links, records_from_patients


def _pairs(groups: dict[object, set[int]]) -> set[tuple[int, int]]:
    return {pair for g in groups.values() for pair in combinations(sorted(g), 2)}


def _prf(
    truth: set[tuple[int, int]], predicted: set[tuple[int, int]]
) -> tuple[float, float, float]:
    tp = len(truth & predicted)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    return precision, recall, 2 * precision * recall / (precision + recall)


class Measured(NamedTuple):
    figures: dict[str, float]
    truth: set[tuple[int, int]]  # pairs of records of one person
    linked: set[tuple[int, int]]  # pairs in one cluster after linking
    nhs_only: set[tuple[int, int]]  # pairs sharing an NHS number


def hard_cases(keys: Sequence[str], pairs: set[tuple[int, int]]) -> tuple[int, int]:
    """Pairs of twins, and of a baby and its parent, among ``pairs``."""
    twins = sum(
        1 for i, j in pairs if keys[i] != keys[j] and keys[i].rstrip("t") == keys[j].rstrip("t")
    )
    babies = sum(
        1 for i, j in pairs if keys[i] != keys[j] and keys[i].rstrip("b") == keys[j].rstrip("b")
    )
    return twins, babies


def measure(keys: Sequence[str], patients: Sequence[dict[str, Any]]) -> Measured:
    """Link ``patients`` in memory; ``keys[i]`` is the true person of ``patients[i]``."""
    records = records_from_patients(list(patients))
    began = time.perf_counter()
    plan = plan_links(records)
    elapsed = time.perf_counter() - began
    truth: dict[object, set[int]] = defaultdict(set)
    predicted: dict[object, set[int]] = defaultdict(set)
    by_nhs: dict[object, set[int]] = defaultdict(set)
    for i, key in enumerate(keys):
        truth[key].add(i)
        predicted[plan.clusters.find(i)].add(i)
        nhs = records[i].features.nhs
        if nhs is not None:
            by_nhs[nhs.value].add(i)
    t = _pairs(truth)
    p = _pairs(predicted)
    n = _pairs(by_nhs)
    precision, recall, f1 = _prf(t, p)
    nhs_p, nhs_r, nhs_f = _prf(t, n)
    twins, babies = hard_cases(keys, p)
    figures: dict[str, float] = {
        "records": len(records),
        "true_pairs": len(t),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "nhs_only_precision": nhs_p,
        "nhs_only_recall": nhs_r,
        "nhs_only_f1": nhs_f,
        "twins_wrongly_linked_pairs": twins,
        "babies_wrongly_linked_pairs": babies,
        "reviews": len(plan.reviews),
        # the review band: records with at least one review, and reviews of one person's two
        # records (the band's yield: the rest a steward rejects)
        "records_in_review": len({r for i, j, *_ in plan.reviews for r in (i, j)}),
        "reviews_of_one_person": sum(1 for i, j, *_ in plan.reviews if keys[i] == keys[j]),
        "pairs_scored": plan.pairs_scored,
        "link_seconds": elapsed,
    }
    return Measured(figures, t, p, n)


def run(people: int, seed: int, version: int = 2) -> dict[str, float]:
    keys, patients = zip(*population(people, seed, version=version), strict=True)
    return measure(keys, patients).figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--population-version", type=int, default=2, choices=sorted(VERSIONS))
    args = parser.parse_args()
    version = args.population_version
    print(
        f"machine: {machine()}; date: {datetime.now(UTC):%Y-%m-%d}; population {VERSIONS[version]}"
    )
    for seed in args.seeds:
        figures = run(args.people, seed, version)
        print(f"\npeople {args.people}, seed {seed}")
        for key, value in figures.items():
            print(
                f"{key:32} {value:12.4f}" if isinstance(value, float) else f"{key:32} {value:>12}"
            )


if __name__ == "__main__":
    main()
