"""Benchmark of a node's start-up: replay speed, and start-up time against the log's length.

For each log length it writes a log of that many events (a leader's real events: orders
placed and cancelled on one book) into an archive of its own (created and dropped here),
taking a snapshot every --snapshot-every events the way a node does (forked child), then
times what a node does at start-up (nodes/state.py NodeState.recover: load the latest
snapshot, check its digest, replay the events after it). It also times a replay of the
whole log with no snapshot, which gives the replay speed in events/s. Prints figures;
asserts nothing about time.

    python bench/startup.py [--events 10000,1000000] [--snapshot-every 200000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from archive import PostgresSnapshotStore
from nodes.engine import AddInstrument, CancelOrder, Engine, PlaceOrder, decode_events
from nodes.snapshotter import Snapshotter
from nodes.state import NodeState, collector_paused

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BOOK = 20_000  # resting orders the log keeps on the book


def write_log(state: NodeState, events_wanted: int, snapshot_every: int, location: str) -> int:
    """Orders and cancels until the log holds `events_wanted` events; snapshots on the way."""
    engine = state.engine
    snapshotter = Snapshotter(location)
    first, events = 1, list(engine.process(AddInstrument("ops", 1, "BENCH", tick_size=1, lot_size=1)))
    resting: list[tuple[int, str]] = []
    seq, next_snapshot = 0, snapshot_every
    while engine.position < events_wanted:
        seq += 1
        client = f"c{seq % 200}"
        if len(resting) >= BOOK:
            order_id, account = resting.pop(seq % len(resting))
            events += engine.process(CancelOrder(client, seq, account, order_id, timestamp=seq))
        else:
            side = 1 + seq % 2
            price = 100_000 - 1 - seq % 1000 if side == 1 else 100_000 + 1 + seq % 1000
            accepted = engine.process(PlaceOrder(client, seq, client, "BENCH", side, 1 + seq % 9, price, timestamp=seq))
            resting.append((accepted[0].order_id, client))
            events += accepted
        if len(events) >= 20_000 or engine.position >= events_wanted:
            state.append(state.entries_for(events, 1, 1, first))
            first, events = engine.position + 1, []
            # None at the very end: start-up then replays a whole interval (the worst case).
            if snapshot_every and next_snapshot <= engine.position < events_wanted:
                next_snapshot = engine.position + snapshot_every
                snapshotter.start(engine)
                while (done := snapshotter.poll(engine, state.archived)) is None:
                    time.sleep(0.01)
                if not done.ok:
                    raise SystemExit(f"bench: {done.status}")
    return engine.position


def full_replay(location: str) -> tuple[int, float]:
    """Replay the whole log from position 1 into a fresh engine (no snapshot)."""
    state = NodeState(location)
    try:
        engine = Engine()
        started = time.perf_counter()
        with collector_paused():  # as NodeState.recover replays
            for batch in state.log.read(1):
                engine.apply_batch(decode_events([entry.payload for entry in batch]))
        return engine.position, time.perf_counter() - started
    finally:
        state.close()


def measure(events: int, snapshot_every: int) -> dict:
    dbname = f"tec_bench_startup_{uuid.uuid4().hex[:8]}"
    location = make_conninfo(SERVER, dbname=dbname)
    try:
        writer = NodeState(location)
        writer.recover()
        started = time.perf_counter()
        tail = write_log(writer, events, snapshot_every, location)
        written_s = time.perf_counter() - started
        writer.close()
        del writer
        gc.collect()
        with PostgresSnapshotStore(location) as store:
            latest = store.latest()
        snapshot_at = latest.position if latest else 0
        # What a node does at start-up, in a fresh state, timed whole.
        node = NodeState(location)
        started = time.perf_counter()
        status = node.recover()
        startup_s = time.perf_counter() - started
        node.close()
        replayed, replay_s = full_replay(location)
        return {
            "events": tail,
            "snapshot_every": snapshot_every,
            "latest_snapshot": snapshot_at,
            "write_s": round(written_s, 1),
            "startup_s": round(startup_s, 3),
            "startup_replayed": tail - snapshot_at,
            "startup_status": status,
            "full_replay_s": round(replay_s, 3),
            "full_replay_events_per_s": round(replayed / replay_s) if replay_s else None,
        }
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", default="10000,1000000", help="comma-separated log lengths (default 10000,1000000)")
    parser.add_argument("--snapshot-every", type=int, default=200_000, help="events between snapshots (0: none)")
    parser.add_argument("--json", action="store_true", help="one JSON object per log length")
    args = parser.parse_args()
    for events in (int(n) for n in args.events.split(",")):
        result = measure(events, args.snapshot_every)
        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"{result['events']:>10,} events, snapshot every {args.snapshot_every:,}: start-up {result['startup_s']:.2f} s "
            f"(snapshot at {result['latest_snapshot']:,} + {result['startup_replayed']:,} events replayed); "
            f"whole log replayed without a snapshot in {result['full_replay_s']:.2f} s = "
            f"{result['full_replay_events_per_s']:,} events/s"
        )


if __name__ == "__main__":
    main()
