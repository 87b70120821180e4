"""Cost of signing and verifying command batches, acks and live-stream entries.

Command batches (wire/signing.py, wire/admission.py): the client's HMAC-SHA256 over the
batch (BatchSigner.fields) and the leader's check (Admission.admit: MAC, constant-time
compare, nonce) plus one Grant.refusal per command, for batch sizes 1, 10 and 200.
Replication (archive/streamformat.py entry_mac/entry_refusal, wire/signing.py ack_mac/
ack_refusal): the leader's MAC over a published entry of 1, 30 and 1,000 events (the
bytes it publishes anyway) and a follower's check of it; a follower's ack MAC and the
leader's check of it. Prints microseconds; asserts nothing about time.

    python bench/signing.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wire
from archive.entries import LogEntry
from archive.streamformat import encode_events, entry_mac, entry_refusal
from nodes.engine import (
    OrderAccepted,
    PlaceOrder,
    Side,
    decode_command,
    encode_command,
    encode_event,
)
from wire import signing
from wire.admission import Admission

SECRET = bytes(range(32))
REPLY = wire.reply_key("bench", "client-0123456789ab-cdef0123")
POLICY = {"enforced": True, "keys": {"bench-key": {"client": "bench", "secret": SECRET.hex(), "accounts": ["a1"]}}}


def batch(size: int) -> bytes:
    return wire.encode([
        encode_command(PlaceOrder(client_id="bench", client_seq=i + 1, account="a1", symbol="ACME",
                                  side=Side.BUY, qty=1, price=100))
        for i in range(size)
    ])  # fmt: skip


def measure(size: int, repeat: int) -> dict:
    payload = batch(size)
    commands = [decode_command(item) for item in wire.decode(payload)]
    signer = signing.BatchSigner("bench", "bench-key", SECRET)
    started = time.perf_counter()
    entries = []
    for _ in range(repeat):
        fields = signer.fields(REPLY, payload)
        entries.append({b"r": REPLY.encode(), b"c": payload, b"k": fields["k"].encode(), b"n": fields["n"],
                        b"s": fields["s"]})  # fmt: skip
    sign = (time.perf_counter() - started) / repeat
    admission = Admission.from_policy("bench", POLICY)
    started = time.perf_counter()
    for entry in entries:
        grant = admission.admit(entry, REPLY).grant
        for command in commands:
            grant.refusal(command)
    verify = (time.perf_counter() - started) / repeat
    return {
        "batch_size": size,
        "batch_bytes": len(payload),
        "sign_us_per_batch": round(sign * 1e6, 2),
        "verify_us_per_batch": round(verify * 1e6, 2),
        "sign_us_per_command": round(sign * 1e6 / size, 3),
        "verify_us_per_command": round(verify * 1e6 / size, 3),
    }


def measure_entry(events: int, repeat: int) -> dict:
    """One published entry of `events` events: the leader's MAC and a follower's check."""
    payload = encode_event(OrderAccepted(client_id="bench", client_seq=1, timestamp=1_700_000_000_000_000_000,
                                         order_id=12345, symbol="ACME", account="a1", side=Side.BUY, order_type=0,
                                         price=100, qty=1, tif=0, post_only=False))  # fmt: skip
    blob = encode_events([LogEntry(p, 3, 3, 1_700_000_000_000_000_000 + p, payload) for p in range(1, events + 1)])
    stream, stream_id, term, first = "tec:{bench}:events:3", f"{events}-0", b"3", b"1"
    started = time.perf_counter()
    for _ in range(repeat):
        mac = entry_mac(SECRET, stream, stream_id, term, first, blob)
    sign = (time.perf_counter() - started) / repeat
    fields = {b"term": term, b"first": first, b"events": blob, b"k": b"r-bench", b"s": mac}
    keys, raw_id = {"r-bench": SECRET}, stream_id.encode()
    started = time.perf_counter()
    for _ in range(repeat):
        assert entry_refusal(keys, stream, raw_id, fields) is None
    verify = (time.perf_counter() - started) / repeat
    return {
        "events_per_entry": events,
        "entry_bytes": len(blob),
        "sign_us_per_entry": round(sign * 1e6, 2),
        "verify_us_per_entry": round(verify * 1e6, 2),
        "sign_us_per_event": round(sign * 1e6 / events, 3),
        "verify_us_per_event": round(verify * 1e6 / events, 3),
    }


def measure_ack(repeat: int) -> dict:
    keys = signing.ReplicationKeys("r-bench", {"r-bench": SECRET})
    nonces = signing.AckNonces()
    started = time.perf_counter()
    acks = []
    for position in range(1, repeat + 1):
        nonce = nonces.next()
        mac = signing.ack_mac(SECRET, "bench", "bench-2", position, 3, "a" * 32, nonce, "r-bench")
        acks.append({b"n": b"bench-2", b"p": str(position).encode(), b"t": b"3", b"a": b"a" * 32,
                     b"q": str(nonce).encode(), b"k": b"r-bench", b"s": mac})  # fmt: skip
    sign = (time.perf_counter() - started) / repeat
    seen: dict[str, int] = {}
    started = time.perf_counter()
    for position, fields in enumerate(acks, start=1):
        assert signing.ack_refusal(keys, "bench", fields, "bench-2", position, 3, "a" * 32, seen) is None
    verify = (time.perf_counter() - started) / repeat
    return {"sign_us_per_ack": round(sign * 1e6, 2), "verify_us_per_ack": round(verify * 1e6, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(size, args.repeat) for size in (1, 10, 200)]
    entries = [measure_entry(events, args.repeat) for events in (1, 30, 1000)]
    ack = measure_ack(args.repeat)
    if args.json:
        print(json.dumps({"batches": rows, "entries": entries, "acks": ack}, indent=2))
        return
    print(f"{'batch':>6} {'bytes':>7} {'sign µs/batch':>14} {'verify µs/batch':>16} "
          f"{'sign µs/cmd':>12} {'verify µs/cmd':>14}")  # fmt: skip
    for row in rows:
        print(f"{row['batch_size']:>6} {row['batch_bytes']:>7} {row['sign_us_per_batch']:>14} "
              f"{row['verify_us_per_batch']:>16} {row['sign_us_per_command']:>12} "
              f"{row['verify_us_per_command']:>14}")  # fmt: skip
    print(f"\n{'events':>6} {'bytes':>7} {'sign µs/entry':>14} {'verify µs/entry':>16} "
          f"{'sign µs/event':>14} {'verify µs/event':>16}")  # fmt: skip
    for row in entries:
        print(f"{row['events_per_entry']:>6} {row['entry_bytes']:>7} {row['sign_us_per_entry']:>14} "
              f"{row['verify_us_per_entry']:>16} {row['sign_us_per_event']:>14} "
              f"{row['verify_us_per_event']:>16}")  # fmt: skip
    print(f"\nack: sign {ack['sign_us_per_ack']} µs, verify {ack['verify_us_per_ack']} µs")


if __name__ == "__main__":
    main()
