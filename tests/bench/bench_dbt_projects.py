"""The dbt projects the dbt benchmark builds: a generated one of any size, and the shop project's raw
tables loaded straight into DuckDB (no dlt, so only dbt is measured).

    uv run python -m tests.bench.bench_dbt_projects /tmp/generated --models 200

The generated project is shaped like a real team's: one seed, a staging layer reading it, then
layers of models that each join one or two earlier models (a DAG several levels deep, some tables,
mostly views), and two tests on every model (``unique`` and ``not_null`` on its key): 200 models
give 200 model nodes, 400 test nodes and 1 seed.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from tests.support import REPO

SHOP_SAMPLE = REPO / "flows" / "sample_data" / "shop"
STAGING_MODELS = 20
SEED_ROWS = 500


def _seed(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "customer_id", "amount", "category", "event_date"])
        for i in range(1, rows + 1):
            writer.writerow(
                [
                    i,
                    rng.randint(1, 50),
                    rng.randint(1, 10_000) / 100,
                    rng.choice("abcde"),
                    f"2024-01-{i % 28 + 1:02d}",
                ]
            )


def _model_sql(index: int, upstream: list[str], rng: random.Random) -> str:
    if not upstream:  # staging: a view on the seed
        return (
            "select id, customer_id, amount, category, cast(event_date as date) as event_date\n"
            f"from {{{{ ref('seed_events') }}}}\nwhere id % {STAGING_MODELS} != {index}\n"
        )
    first = upstream[0]
    if len(upstream) == 1:
        return (
            f"select id, customer_id, amount * {rng.randint(1, 9)} as amount, category, event_date\n"
            f"from {{{{ ref('{first}') }}}}\n"
        )
    second = upstream[1]
    return (
        "select a.id, a.customer_id, a.amount + coalesce(b.amount, 0) as amount, a.category, a.event_date\n"
        f"from {{{{ ref('{first}') }}}} as a\n"
        f"left join {{{{ ref('{second}') }}}} as b on a.id = b.id\n"
    )


def generate_project(root: Path, models: int = 200, profile: str = "generated") -> Path:
    """Writes a dbt project of ``models`` models (2 tests each) and one seed under ``root``."""
    rng = random.Random(42)
    (root / "seeds").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "dbt_project.yml").write_text(
        "name: generated\nversion: '1.0.0'\nconfig-version: 2\n"
        f"profile: {profile}\n"
        "flags:\n  send_anonymous_usage_stats: false\n"
        "models:\n  generated:\n    +materialized: view\n"
    )
    _seed(root / "seeds" / "seed_events.csv", SEED_ROWS)
    names: list[str] = []
    schema = ["version: 2", "models:"]
    for i in range(models):
        name = f"stg_{i:03d}" if i < STAGING_MODELS else f"model_{i:03d}"
        if i < STAGING_MODELS:
            upstream: list[str] = []
        else:
            # Mostly recent models, so the DAG is deep (about 10 levels), not a flat fan-out.
            window = names[max(0, len(names) - 40) :]
            upstream = rng.sample(window, k=min(len(window), rng.choice((1, 2, 2))))
        config = "{{ config(materialized='table') }}\n" if i % 4 == 3 else ""
        (root / "models" / f"{name}.sql").write_text(config + _model_sql(i, upstream, rng))
        schema += [
            f"  - name: {name}",
            "    columns:",
            "      - name: id",
            "        data_tests: [unique, not_null]",
        ]
        names.append(name)
    (root / "models" / "schema.yml").write_text("\n".join(schema) + "\n")
    return root


def load_shop_raw_tables(duckdb_path: Path, schema: str = "raw_demo", days: int = 3) -> None:
    """The shop sample's raw tables as dlt would leave them (merged on id, with ``_dlt_load_id``)."""
    import duckdb

    connection = duckdb.connect(str(duckdb_path))
    try:
        connection.execute(f"create schema if not exists {schema}")
        for table in ("customers", "orders", "payments"):
            files = [str(SHOP_SAMPLE / f"day_{day}" / f"{table}.csv") for day in range(1, days + 1)]
            # Later days hold the changed rows: keep each id's last version, as a merge would.
            connection.execute(
                f"create or replace table {schema}.{table} as "
                f"select * exclude (day, rn, filename) from ("
                f"  select *, '17000000' || day || '.1' as _dlt_load_id, "
                f"  row_number() over (partition by id order by day desc) as rn from ("
                f"    select *, cast(regexp_extract(filename, 'day_(\\d+)', 1) as int) as day "
                f"    from read_csv({files!r}, filename = true, union_by_name = true)"
                f"  ) "
                f") where rn = 1"
            )
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--models", type=int, default=200)
    args = parser.parse_args()
    print(generate_project(args.root, args.models))


if __name__ == "__main__":
    main()
