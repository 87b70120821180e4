"""Benchmark of snapshots on a large book: how long the node's loop stops, and how long a snapshot takes.

For each book size it builds an engine with that many resting orders, archives the
events in a PostgreSQL archive of its own (created and dropped here), and then runs a
loop like the node's: small batches of commands through handle+apply, back to back.
While the loop runs, it takes a snapshot the way the node does (nodes/snapshotter.py:
fork, the child serialises and stores it) and prints the loop's longest pause during
the snapshot (the fork, and whatever copy-on-write costs the parent afterwards) against
its longest pause without one, the fork itself, and the snapshot's total time until
stored and verified. With --inline it also measures the old way (serialise and store
on the loop thread) for comparison. Prints figures; asserts nothing about time.

    python bench/snapshot.py [--orders 100000,1000000] [--inline] [--json]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from archive import PostgresSnapshotStore
from nodes.engine import AddInstrument, CancelOrder, PlaceOrder
from nodes.snapshotter import Snapshotter
from nodes.state import NodeState

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BATCH = 20  # commands per loop iteration: a batch every 2 ms at 10,000/s


def resting(seq: int) -> PlaceOrder:
    """Orders that never cross: bids below 100,000, asks above, 2,000 levels a side."""
    side = 1 + seq % 2
    offset = 1 + seq % 2000
    price = 100_000 - offset if side == 1 else 100_000 + offset
    return PlaceOrder(f"c{seq % 500}", seq // 500 + 1, f"a{seq % 500}", "BENCH", side, 1 + seq % 9, price, timestamp=seq)


def build(state: NodeState, orders: int) -> None:
    engine = state.engine
    first, events = 1, engine.process(AddInstrument("ops", 1, "BENCH", tick_size=1, lot_size=1))
    for seq in range(orders):
        events += engine.process(resting(seq))
        if len(events) >= 50_000:
            state.append(state.entries_for(events, 1, 1, first))
            first, events = engine.position + 1, []
    if events:
        state.append(state.entries_for(events, 1, 1, first))


def run_loop(state: NodeState, seconds: float, seq: int, rate: int, snapshot=None) -> tuple[float, int, dict]:
    """Batches of BATCH commands at `rate` commands/s for `seconds` (and until
    `snapshot(info)`, called between two batches, returns True). Each batch places an
    order and cancels it again, so the book keeps its size. Returns the loop's longest
    pause (how late a batch finished after it was due, less the batch's own work), the
    next seq, and info (the events produced, and what snapshot put there)."""
    engine = state.engine
    info: dict = {"first": engine.position + 1, "events": []}
    events = info["events"]
    interval = BATCH / rate
    started = due = time.perf_counter()
    longest = 0.0
    while True:
        if snapshot is not None and snapshot(info):
            snapshot = None
        began = time.perf_counter()
        for _ in range(BATCH // 2):
            order = resting(seq)
            accepted = engine.process(order)
            seq += 1
            cancel = CancelOrder(f"c{seq % 500}", seq // 500 + 1, order.account, accepted[0].order_id, timestamp=seq)
            cancelled = engine.process(cancel)
            seq += 1
            if info.get("keep", True):
                events += accepted + cancelled
        finished = time.perf_counter()
        work = finished - began
        longest = max(longest, finished - due - work)
        due += interval
        if finished - started > seconds and snapshot is None:
            return longest, seq, info
        if due > finished:
            time.sleep(due - finished)


def measure(orders: int, inline: bool, rate: int, repeat: int) -> dict:
    dbname = f"tec_bench_snapshot_{uuid.uuid4().hex[:8]}"
    location = make_conninfo(SERVER, dbname=dbname)
    state = NodeState(location)
    try:
        state.recover()
        started = time.perf_counter()
        build(state, orders)
        built_s = time.perf_counter() - started
        gc.collect()
        gc.freeze()  # as the node does after its replay (NODE_GC=freeze)
        gc.set_threshold(50_000, 50, 1000)
        seq = orders
        baseline, seq, info = run_loop(state, 2.0, seq, rate)
        state.append(state.entries_for(info["events"], 1, 1, info["first"]))
        pauses, forks, totals, ok = [], [], [], True
        for _ in range(repeat):
            # The fork happens at a position the archive holds; the loop's events after
            # it are archived once the snapshot is done (by the archive thread, in a node).
            snapshotter = Snapshotter(location)
            fork_engine = state.engine
            archived = state.archived

            def snapshot(info: dict, snapshotter=snapshotter, fork_engine=fork_engine, archived=archived) -> bool:
                if "started" not in info:
                    info["started"] = time.perf_counter()
                    snapshotter.start(fork_engine)
                    return False
                done = snapshotter.poll(fork_engine, archived)
                if done is None:
                    return False
                info["done"] = done
                info["total_s"] = time.perf_counter() - info["started"]
                return True

            during, seq, info = run_loop(state, 0.5, seq, rate, snapshot)
            state.append(state.entries_for(info["events"], 1, 1, info["first"]))
            pauses.append(during)
            forks.append(info["done"].fork_s)
            totals.append(info["total_s"])
            ok = ok and info["done"].ok
        with PostgresSnapshotStore(location) as store:
            size = store.list()[0].size
        result = {
            "orders": orders,
            "resting_orders_at_snapshot": len(state.engine._orders),
            "rate": rate,
            "snapshots": repeat,
            "build_s": round(built_s, 2),
            "loop_longest_pause_ms_without_snapshot": round(baseline * 1000, 2),
            "loop_longest_pause_ms_during_snapshot": round(max(pauses) * 1000, 2),
            "loop_longest_pause_ms_median": round(statistics.median(pauses) * 1000, 2),
            "fork_ms_max": round(max(forks) * 1000, 2),
            "snapshot_total_s": round(statistics.median(totals), 2),
            "snapshot_ok": ok,
            "snapshot_mb": round(size / 1e6, 1),
            "rss_mb": round(_rss_mb(), 1),
        }
        if inline:
            engine = state.engine
            started = time.perf_counter()
            data = engine.snapshot()
            with PostgresSnapshotStore(location) as store:
                store.save(engine.position, 1, engine.snapshot_digest(data), data)
            result["inline_stall_s"] = round(time.perf_counter() - started, 2)
        return result
    finally:
        state.close()
        gc.unfreeze()
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    if os.environ.get("BENCH_TRACE"):
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["BENCH_TRACE"]), exit=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", default="100000,1000000", help="comma-separated book sizes (resting orders)")
    parser.add_argument("--inline", action="store_true", help="also time the old snapshot on the loop thread")
    parser.add_argument("--rate", type=int, default=10_000, help="commands/s the loop runs at (default 10,000)")
    parser.add_argument("--repeat", type=int, default=3, help="snapshots per book size (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args()
    for orders in (int(n) for n in args.orders.split(",")):
        result = measure(orders, args.inline, args.rate, args.repeat)
        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"{orders:>9,} resting orders, {args.repeat} snapshots at {result['rate']:,} commands/s: loop's longest "
            f"pause {result['loop_longest_pause_ms_during_snapshot']:.1f} ms during a snapshot (median "
            f"{result['loop_longest_pause_ms_median']:.1f} ms; {result['loop_longest_pause_ms_without_snapshot']:.1f} ms "
            f"in 2 s without one), fork up to {result['fork_ms_max']:.1f} ms; snapshot {result['snapshot_mb']} MB "
            f"stored and verified in {result['snapshot_total_s']:.2f} s ({'ok' if result['snapshot_ok'] else 'FAILED'}); "
            f"process RSS {result['rss_mb']:.0f} MB"
            + (f"; inline (old way) the loop would stop {result['inline_stall_s']:.2f} s" if args.inline else "")
        )


if __name__ == "__main__":
    main()
