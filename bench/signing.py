"""Cost of signing and verifying command batches (wire/signing.py, wire/admission.py).

Per batch: the client's HMAC-SHA256 over the batch (BatchSigner.fields) and the leader's
check (Admission.admit: MAC, constant-time compare, nonce) plus one Grant.refusal per
command. Prints microseconds per batch and per command for batch sizes 1, 10 and 200;
asserts nothing about time.

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
from nodes.engine import PlaceOrder, Side, decode_command, encode_command
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(size, args.repeat) for size in (1, 10, 200)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'batch':>6} {'bytes':>7} {'sign µs/batch':>14} {'verify µs/batch':>16} "
          f"{'sign µs/cmd':>12} {'verify µs/cmd':>14}")  # fmt: skip
    for row in rows:
        print(f"{row['batch_size']:>6} {row['batch_bytes']:>7} {row['sign_us_per_batch']:>14} "
              f"{row['verify_us_per_batch']:>16} {row['sign_us_per_command']:>12} "
              f"{row['verify_us_per_command']:>14}")  # fmt: skip


if __name__ == "__main__":
    main()
