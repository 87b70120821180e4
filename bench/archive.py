"""Benchmark of the archive's hot path beside the raw limits and the eventsourcing library.

Side by side, in one run, on the same pre-generated events (batches of --batch events of
--payload bytes):
  (a) raw: psycopg binary COPY into a table of one row per event (with and without a
      primary key: the archive's layout before segments, and its bare floor), and
      redis-py XADD of the same payloads, one entry per event (pipelined per batch) and
      one entry per batch;
  (b) the archive: PostgresEventLog.append (one row per batch, a segment, in one round
      trip) and RedisEventPublisher.publish;
  (c) an eventsourcing Application on PostgreSQL saving the same number of events, one
      save per batch.
Prints events/s (median of --repeats, with min..max) and the ratios. Uses its own
temporary database and Redis keys and removes them. DATABASE_URL names the admin
connection, REDIS_URL the Redis server.

    .venv/bin/python bench/archive.py [--events 200000] [--repeats 5] [--es-repeats 1] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from redis import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive import (
    LogEntry,
    PostgresEventLog,
    RedisEventPublisher,
    create_archive,
    set_fence,
)
from wire.keys import keys

ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

RAW_TABLE = "raw_event"
BARE_TABLE = "bare_event"
COPY_TYPES = ("int8", "int8", "int8", "int8", "bytea")
COLUMNS = "position bigint{pk}, term bigint NOT NULL, kind bigint NOT NULL, timestamp bigint NOT NULL, payload bytea NOT NULL"

Batches = list[list[LogEntry]]


def make_batches(events: int, batch: int, payload: int) -> Batches:
    entries = [
        LogEntry(p, 1, p % 16, 1_700_000_000_000_000_000 + p * 1000, os.urandom(payload))
        for p in range(1, events + 1)
    ]
    return [entries[i : i + batch] for i in range(0, events, batch)]


def timed(run: Callable[[], None], events: int) -> float:
    started = time.perf_counter()
    run()
    return events / (time.perf_counter() - started)


# -- PostgreSQL ----------------------------------------------------------------------------


@contextmanager
def bench_database() -> Iterator[str]:
    dbname = f"tec_bench_{uuid.uuid4().hex[:8]}"
    url = make_conninfo(ADMIN_URL, dbname=dbname)
    create_archive(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {RAW_TABLE} ({COLUMNS.format(pk=' PRIMARY KEY')})")
            conn.execute(f"CREATE TABLE {BARE_TABLE} ({COLUMNS.format(pk=' NOT NULL')})")
            # Autovacuum of the previous figure's rows would run during the next figure.
            for table in (RAW_TABLE, BARE_TABLE, "archive_segment"):
                conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )


def reset_table(url: str, table: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {table}")
        conn.execute("CHECKPOINT")


def raw_copy(url: str, table: str, batches: Batches) -> Callable[[], None]:
    def run() -> None:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            statement = f"COPY {table} FROM STDIN (FORMAT BINARY)"
            for batch in batches:
                with cur.copy(statement) as copy:
                    copy.set_types(COPY_TYPES)
                    for row in batch:
                        copy.write_row(row)
                conn.commit()

    return run


def archive_append(url: str, batches: Batches) -> Callable[[], None]:
    def run() -> None:
        with PostgresEventLog(url) as log:
            for batch in batches:
                log.append(batch)

    return run


def eventsourcing_save(url: str, batches: Batches) -> Callable[[], None]:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Ledger(Aggregate):
        @event("Recorded")
        def record(self, seq: int, kind: int, payload: str) -> None:
            pass

    params = conninfo_to_dict(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params["dbname"]),
        "POSTGRES_HOST": str(params.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(params.get("port", "5432")),
        "POSTGRES_USER": str(params.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(params.get("password", "")),
    }
    # The same payload bytes as text: its JSON transcoder does not take bytes.
    text_batches = [[(e.position, e.kind, e.payload.hex()[:100]) for e in b] for b in batches]

    def run() -> None:
        app = Application(env=env)
        ledger = Ledger()
        for batch in text_batches:
            for seq, kind, payload in batch:
                ledger.record(seq, kind, payload)
            app.save(ledger)
        app.close()

    return run


def reset_eventsourcing(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN (%s, %s, 'archive_segment', 'archive_snapshot')",
                (RAW_TABLE, BARE_TABLE),
            )
        ]
        for table in tables:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")


# -- Redis ---------------------------------------------------------------------------------


def raw_xadd_per_event(redis: Redis, stream: str, batches: Batches) -> Callable[[], None]:
    def run() -> None:
        for batch in batches:
            with redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.xadd(stream, {b"payload": entry.payload}, id=f"{entry.position}-0")
                pipe.execute()

    return run


def raw_xadd_per_batch(redis: Redis, stream: str, batches: Batches) -> Callable[[], None]:
    encode = msgspec.msgpack.Encoder().encode

    def run() -> None:
        for batch in batches:
            redis.xadd(
                stream,
                {b"events": encode([entry.payload for entry in batch])},
                id=f"{batch[-1].position}-0",
            )

    return run


def archive_publish(redis: Redis, cluster: str, batches: Batches) -> Callable[[], None]:
    publisher = RedisEventPublisher(redis, cluster)

    def run() -> None:
        for batch in batches:
            publisher.publish(1, batch)

    return run


# -- the run -------------------------------------------------------------------------------


class Figure:
    """One benchmarked figure: how to run it, how to reset before each repeat, its rates."""

    def __init__(self, name: str, run: Callable[[], None], reset: Callable[[], None]) -> None:
        self.name, self.run, self.reset = name, run, reset
        self.rates: list[float] = []

    def summary(self) -> dict[str, float]:
        return {
            "median": statistics.median(self.rates),
            "min": min(self.rates),
            "max": max(self.rates),
        }


def measure_round_robin(figures: list[Figure], events: int, repeats: int) -> None:
    """Repeat the figures in turn, so drift of the machine hits all of them alike."""
    for _ in range(repeats):
        for figure in figures:
            figure.reset()
            figure.rates.append(timed(figure.run, events))


def report(figures: list[Figure], results: dict[str, dict[str, float]], quiet: bool) -> None:
    for figure in figures:
        r = results[figure.name] = figure.summary()
        if not quiet:
            print(
                f"{figure.name:<48} {r['median']:>12,.0f}   ({r['min']:,.0f} .. {r['max']:,.0f})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--payload", type=int, default=100, help="payload bytes per event")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--es-repeats",
        type=int,
        default=1,
        help="repeats of the (slow) eventsourcing figure; 0 skips it",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    batches = make_batches(args.events, args.batch, args.payload)
    events = sum(len(b) for b in batches)
    gc.collect()
    gc.freeze()  # the node's policy: the pre-built data is not rescanned by every collection
    quiet = args.json
    results: dict[str, dict[str, float]] = {}
    if not quiet:
        print(
            f"{events:,} events in batches of {args.batch}, {args.payload}-byte payloads, "
            f"median of {args.repeats} (eventsourcing: {args.es_repeats}) (min .. max), events/s"
        )

    redis = Redis.from_url(REDIS_URL)
    cluster = f"bench_{uuid.uuid4().hex[:8]}"
    stream = keys(cluster).events
    raw_stream = f"tec:{cluster}:raw"
    es_name = f"pg: eventsourcing, {args.batch} events a save"
    try:
        with bench_database() as url:
            pg = [
                Figure(
                    "pg: row per event, binary COPY, PK (old layout)",
                    raw_copy(url, RAW_TABLE, batches),
                    lambda: reset_table(url, RAW_TABLE),
                ),
                Figure(
                    "pg: row per event, binary COPY, no index",
                    raw_copy(url, BARE_TABLE, batches),
                    lambda: reset_table(url, BARE_TABLE),
                ),
                Figure(
                    "pg: archive append (row per batch)",
                    archive_append(url, batches),
                    lambda: reset_table(url, "archive_segment"),
                ),
            ]
            measure_round_robin(pg, events, args.repeats)
            report(pg, results, quiet)
            if args.es_repeats > 0:
                es = [
                    Figure(
                        es_name, eventsourcing_save(url, batches), lambda: reset_eventsourcing(url)
                    )
                ]
                measure_round_robin(es, events, args.es_repeats)
                report(es, results, quiet)

        set_fence(redis, cluster, 1)
        streams = [
            Figure(
                "redis: raw XADD, entry per event, pipelined",
                raw_xadd_per_event(redis, raw_stream, batches),
                lambda: redis.delete(raw_stream),
            ),
            Figure(
                "redis: raw XADD, entry per batch",
                raw_xadd_per_batch(redis, raw_stream, batches),
                lambda: redis.delete(raw_stream),
            ),
            Figure(
                "redis: archive publish (fenced, entry per batch)",
                archive_publish(redis, cluster, batches),
                lambda: redis.delete(stream),
            ),
        ]
        measure_round_robin(streams, events, args.repeats)
        report(streams, results, quiet)
    finally:
        leftovers = list(redis.scan_iter(match=keys(cluster).pattern))
        if leftovers:
            redis.delete(*leftovers)
        redis.close()

    def ratio(a: str, b: str) -> float | None:
        if a in results and b in results:
            return results[a]["median"] / results[b]["median"]
        return None

    ratios = {
        "append / row per event (old layout)": ratio(
            "pg: archive append (row per batch)", "pg: row per event, binary COPY, PK (old layout)"
        ),
        "append / row per event, no index": ratio(
            "pg: archive append (row per batch)", "pg: row per event, binary COPY, no index"
        ),
        "append / eventsourcing": ratio("pg: archive append (row per batch)", es_name),
        "publish / raw XADD per batch": ratio(
            "redis: archive publish (fenced, entry per batch)", "redis: raw XADD, entry per batch"
        ),
        "publish / raw XADD per event": ratio(
            "redis: archive publish (fenced, entry per batch)",
            "redis: raw XADD, entry per event, pipelined",
        ),
    }
    if args.json:
        print(
            json.dumps(
                {
                    "events": events,
                    "batch": args.batch,
                    "payload_bytes": args.payload,
                    "repeats": args.repeats,
                    "rates": results,
                    "ratios": ratios,
                }
            )
        )
        return
    print()
    for name, value in ratios.items():
        if value is not None:
            print(f"ratio {name:<43} {value:>8.2f}")


if __name__ == "__main__":
    main()
