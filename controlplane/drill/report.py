"""The drill's report: a table for the operator's screen, and the same as JSON (--report FILE)."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.drill.checker import LIVENESS, SAFETY, CheckResult

_NAMES = {
    "committed_results_survive": "acknowledged commands lost",
    "commands_execute_once": "commands applied twice",
    "logs_are_prefixes_up_to_commit": "followers are prefixes of the leader up to the commit",
    "terms_never_decrease": "terms never decrease along a log",
    "one_leader_per_term": "one leader per term",
    "positions_contiguous": "positions contiguous",
    "equal_state_digests": "equal state digests at equal position",
    "poison_set_aside": "poison entries set aside",
    "recovers": "every fault recovered (a later command committed)",
    "converges": "every archive caught up with the leader",
    "every_command_answered": "every command answered",
    "no_quiet_exits": "no node exited quietly (status 0)",
}


def render(result: CheckResult, header: str = "") -> str:
    lines: list[str] = []
    add = lines.append
    if header:
        add(header)
    commands = result.commands
    add(
        f"Commands: {commands.get('sent', 0)} sent, {commands.get('committed', 0)} committed "
        f"({commands.get('retried', 0)} retried, {commands.get('answered_as_duplicates', 0)} answers were "
        f"duplicates of the original), {commands.get('failed', 0)} failed, {commands.get('unknown', 0)} unknown"
    )
    add(f"Final leader {result.leader or '?'}; commit point {result.commit_position}; "
        f"terms: {', '.join(f'{k} {v}' for k, v in result.terms.items())}")  # fmt: skip
    add("")
    add(f"{'check':<58} {'violations':>10}")
    add(f"{'-' * 58} {'-' * 10}")
    for invariant in (*SAFETY, *LIVENESS):
        count = result.counts.get(invariant, 0)
        add(f"{_NAMES.get(invariant, invariant):<58} {count:>10}{'  <-- VIOLATED' if count else ''}")
    add("")
    add(f"{'archive':<22} {'events':>8} {'last term':>9} {'executions':>10}  digest at {result.common_position:<8} final digest")
    for summary in result.archives:
        add(f"{summary.node:<22} {summary.entries:>8} {summary.last_term:>9} {summary.executions:>10}  "
            f"{summary.common_digest[:16]:<20} {summary.digest[:16]}{'  ' + summary.error if summary.error else ''}")  # fmt: skip
    add("")
    if result.recovery:
        add("Recovery: seconds from the fault to the next committed result of a command sent after it")
        add(f"{'fault':<28} {'count':>5} {'p50':>7} {'p99':>7} {'max':>7}")
        for label, row in _recovery_rows(result):
            add(f"{label:<28} {row['count']:>5} {row['p50']:>7.2f} {row['p99']:>7.2f} {row['max']:>7.2f}")
        add("")
    if result.stalls:
        add("Longest stall: seconds without any commit, from the fault until a command sent after it ended committed")
        add(f"{'fault':<28} {'count':>5} {'p50':>7} {'max':>7}")
        for label, row in result.stalls.items():
            add(f"{label:<28} {row['count']:>5} {row['p50']:>7.2f} {row['max']:>7.2f}")
        add("")
    poison = result.dead_letters.get("poison", {})
    if poison:
        injected = sum(stats["injected"] for stats in poison.values())
        handled = sum(stats["handled"] for stats in poison.values())
        per_stream = ", ".join(f"{stream} {stats['handled']}/{stats['injected']}" for stream, stats in sorted(poison.items()))
        add(f"Poison: {handled} of {injected} entries set aside or answered with an error ({per_stream})")
    set_aside = result.dead_letters.get("set_aside_by_stream", {})
    if set_aside:
        add("Dead letters counted by the nodes: " + ", ".join(f"{stream} {count}" for stream, count in sorted(set_aside.items())))
    for entry, seen in result.dead_letters.get("set_aside_repeatedly", {}).items():
        nodes = ", ".join(f"{node} {count}x" for node, count in seen["nodes"].items())
        add(f"  {entry} was set aside {seen['count']} times over {(seen['last_ms'] - seen['first_ms']) / 1000:.1f} s ({nodes})")
    skipped = [fault for fault in result.faults if fault.get("skipped")]
    for fault in skipped:
        add(f"Skipped fault {fault['index']} ({fault['variant']}): {fault['detail']}")
    if result.exits:
        add("Processes that exited on their own (restarted as a runner would):")
        for record in result.exits:
            add(f"  {record['process']}: status {record['code']}{' (QUIET)' if record.get('quiet') else ''}; log {record['log']}")
    add("")
    if result.violations:
        add(f"VIOLATIONS ({sum(result.counts.values())}):")
        for violation in result.violations:
            add(f"  [{violation.invariant}] {violation.detail}")
    else:
        add("No violation: 0 lost, 0 applied twice, logs agree, equal digests.")
    return "\n".join(lines)


def _recovery_rows(result: CheckResult) -> list[tuple[str, dict]]:
    """One row per fault kind; a kind with several variants (kill leader, kill follower)
    gets its total and then a row per variant."""
    rows: list[tuple[str, dict]] = []
    for kind, stats in result.recovery_by_kind.items():
        if kind == "all faults":
            continue
        variants = [(v, s) for v, s in result.recovery.items() if v == kind or v.startswith(f"{kind} ")]
        if len(variants) == 1:
            rows.append(variants[0])
        else:
            rows.append((kind, stats))
            rows += [(f"  {variant}", variant_stats) for variant, variant_stats in variants]
    if "all faults" in result.recovery_by_kind:
        rows.append(("all faults", result.recovery_by_kind["all faults"]))
    return rows


def write_json(result: CheckResult, path: Path, extra: dict | None = None) -> None:
    data = result.as_json()
    if extra:
        data.update(extra)
    path.write_text(json.dumps(data, indent=2, default=str))
