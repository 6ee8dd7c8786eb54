"""Measure the pure FHIR code on the shared data (not a test; not timed in CI).

    PYTHONPATH=services/records/src python services/records/tests/fhir/bench_fhir_domain.py

Prints per-resource validation cost (model library vs carevault's JSON pass),
index-term extraction cost, and bundle planning throughput with and without
validation. CPU time of this process (time.process_time), best of three
rounds, so that other load on the machine counts as little as it can.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from carevault_records.fhir._jsonshape import check_json_shape
from carevault_records.fhir.bundle_convert import collection_as_transaction, conditional_directory_creates
from carevault_records.fhir.bundles import plan_transaction, resolve_plan
from carevault_records.fhir.search import IndexTerm, SearchQuery, extract_index_terms, matches
from carevault_records.fhir.validation import model_class, validate_resource

DATA = Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "fhir"


class Store:
    def __init__(self) -> None:
        self.terms: dict[tuple[str, str], set[IndexTerm]] = {}
        self.by_term: dict[tuple[str, IndexTerm], set[str]] = defaultdict(set)

    async def find(self, resource_type: str, query: SearchQuery) -> Sequence[str]:
        candidates = set().union(*(self.by_term[(resource_type, t)] for t in query.clauses[0].terms))
        return [i for i in candidates if matches(query, self.terms[(resource_type, i)], i)]

    def add(self, resource: dict[str, Any]) -> None:
        key = (resource["resourceType"], resource["id"])
        self.terms[key] = set(extract_index_terms(resource))
        for term in self.terms[key]:
            self.by_term[(key[0], term)].add(key[1])


def best(rounds: int, fn: Callable[[], int]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(rounds):
        started = time.process_time()
        count = fn()
        times.append(time.process_time() - started)
    return min(times), count


def load(path: Path) -> dict[str, Any]:
    bundle: dict[str, Any] = orjson.loads(path.read_bytes())
    return conditional_directory_creates(collection_as_transaction(bundle) if bundle["type"] == "collection" else bundle)


def main() -> None:
    dev_paths = sorted((DATA / "dev").glob("*.json"))
    directory_paths = sorted((DATA / "directory").glob("*.json"), key=lambda p: (not p.name.startswith("smart-"), p.name))
    dev = [e["resource"] for p in dev_paths for e in orjson.loads(p.read_bytes())["entry"]]
    directory = [e["resource"] for p in directory_paths for e in orjson.loads(p.read_bytes())["entry"]]
    for r in dev + directory:
        validate_resource(r)  # warm the model and schema caches

    def each(resources: list[dict[str, Any]], fn: Callable[[dict[str, Any]], object]) -> Callable[[], int]:
        def run() -> int:
            for r in resources:
                fn(r)
            return len(resources)

        return run

    rows = [
        ("validate_resource, dev (Synthea patients)", each(dev, validate_resource)),
        ("validate_resource, directory", each(directory, validate_resource)),
        ("  of which model_validate (fhir.resources R4B)", each(dev, lambda r: model_class(r["resourceType"]).model_validate(r))),
        ("  of which FHIR JSON pass (carevault)", each(dev, lambda r: check_json_shape(r, model_class(r["resourceType"]), "X", 50))),
        ("extract_index_terms, dev", each(dev, extract_index_terms)),
    ]
    print(f"python {sys.version.split()[0]}; {len(dev)} dev resources ({sum(map(len, map(orjson.dumps, dev))) / len(dev):.0f} B mean)")
    for label, fn in rows:
        elapsed, count = best(3, fn)
        print(f"{label:50s} {elapsed / count * 1e6:7.1f} us/resource {count / elapsed:9.0f} resources/s")

    per_type: dict[str, list[float]] = defaultdict(list)
    for r in dev:
        started = time.process_time()
        validate_resource(r)
        per_type[r["resourceType"]].append(time.process_time() - started)
    share = {t: sum(v) for t, v in per_type.items()}
    total = sum(share.values())
    print(
        "validation time by type (dev): "
        + ", ".join(
            f"{t} {statistics.mean(per_type[t]) * 1e6:.0f} us x{len(per_type[t])} ({share[t] / total:.0%})"
            for t in sorted(share, key=share.__getitem__, reverse=True)[:6]
        )
    )

    for validate in (False, True):
        timings = []
        for _ in range(3):
            store, count, spent = Store(), 0, 0.0
            for path in directory_paths + dev_paths:
                bundle = load(path)
                started = time.process_time()
                plan = asyncio.run(resolve_plan(plan_transaction(bundle, validate=validate), store, placeholders=True))
                spent += time.process_time() - started
                for entry in plan.processing_order():
                    if entry.method == "POST" and not entry.noop and entry.resource is not None:
                        store.add(entry.resource)
                count += len(bundle["entry"])
            timings.append(spent)
        elapsed = min(timings)
        label = "plan_transaction + resolve_plan, " + ("with validation" if validate else "validate=False")
        print(f"{label:50s} {elapsed / count * 1e6:7.1f} us/entry    {count / elapsed:9.0f} entries/s")


if __name__ == "__main__":
    main()
