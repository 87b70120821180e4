"""The drill's history checker: what the clients were told against what every archive holds.

Usable on its own (`manage.py drill --check HISTORY --archives NODE=URL ...`) or as
`check(history_path, archives)`. It reads the history (controlplane.drill.history) and
every node's archive once the cluster has settled, and checks the rules of DESIGN §4 on
the real processes' data. The safety invariants carry the names the deterministic
simulator uses (tests/simulation/invariants.py), so a failure reads the same in both:

  committed_results_survive       every committed answer is in the final leader's log at
                                  its position with the same payloads (0 lost)
  commands_execute_once           no (client_id, client_seq) executed twice in any log, and
                                  every answer points at the one execution
  logs_are_prefixes_up_to_commit  every archive equals the leader's log up to the commit point
  terms_never_decrease            terms never go back along a log
  one_leader_per_term             one leader per term (role changes, and the nodes' own logs)

and, beside them: positions_contiguous, equal_state_digests (each archive replayed into
a fresh engine: equal digest at equal position), poison_set_aside, and the liveness
ones (recovers, converges, every_command_answered, no_quiet_exits) with the time each
fault took to recover (from the fault to the next committed result of a command sent
after it).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from archive import PostgresEventLog
from controlplane.drill.history import payload_digest, read_history
from nodes.engine import (
    CodecError,
    CommandDuplicate,
    Engine,
    EngineError,
    OrderRejected,
    Reason,
    decode_events,
)

COMMITTED_RESULTS_SURVIVE = "committed_results_survive"
COMMANDS_EXECUTE_ONCE = "commands_execute_once"
LOGS_ARE_PREFIXES = "logs_are_prefixes_up_to_commit"
TERMS_NEVER_DECREASE = "terms_never_decrease"
ONE_LEADER_PER_TERM = "one_leader_per_term"
POSITIONS_CONTIGUOUS = "positions_contiguous"
EQUAL_STATE_DIGESTS = "equal_state_digests"
POISON_SET_ASIDE = "poison_set_aside"
RECOVERS = "recovers"
CONVERGES = "converges"
EVERY_COMMAND_ANSWERED = "every_command_answered"
NO_QUIET_EXITS = "no_quiet_exits"

SAFETY = (COMMITTED_RESULTS_SURVIVE, COMMANDS_EXECUTE_ONCE, LOGS_ARE_PREFIXES, TERMS_NEVER_DECREASE,
          ONE_LEADER_PER_TERM, POSITIONS_CONTIGUOUS, EQUAL_STATE_DIGESTS)  # fmt: skip
LIVENESS = (POISON_SET_ASIDE, RECOVERS, CONVERGES, EVERY_COMMAND_ANSWERED, NO_QUIET_EXITS)
MAX_DETAILS = 20  # violations listed per invariant (the count is always complete)
_UNRECORDED = (int(Reason.INVALID_SEQUENCE), int(Reason.STALE_SEQUENCE))


@dataclass
class Violation:
    invariant: str
    detail: str


@dataclass
class ArchiveSummary:
    node: str
    location: str
    entries: int = 0
    last_term: int = 0
    digest: str = ""  # of the state after the whole log
    common_digest: str = ""  # of the state at the position every archive holds
    executions: int = 0
    error: str = ""


@dataclass
class CheckResult:
    cluster: str = ""
    seed: int | None = None
    leader: str = ""
    commit_position: int = 0
    common_position: int = 0
    commands: dict = field(default_factory=dict)
    archives: list[ArchiveSummary] = field(default_factory=list)
    terms: dict = field(default_factory=dict)
    dead_letters: dict = field(default_factory=dict)
    faults: list[dict] = field(default_factory=list)
    recovery: dict = field(default_factory=dict)  # per fault variant ("kill leader")
    recovery_by_kind: dict = field(default_factory=dict)  # per fault kind ("kill")
    # The longest time without any commit, from the fault until a command sent after it
    # ended (a partition healed, a server back) committed: what a fault whose first
    # commands still slip through (a leader within its lease) costs later, per variant.
    stalls: dict = field(default_factory=dict)
    exits: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # violations per invariant
    violations: list[Violation] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def fail(self, invariant: str, detail: str) -> None:
        self.counts[invariant] = self.counts.get(invariant, 0) + 1
        if self.counts[invariant] <= MAX_DETAILS:
            self.violations.append(Violation(invariant, detail))
        elif self.counts[invariant] == MAX_DETAILS + 1:
            self.violations.append(Violation(invariant, "... more of the same (see the counts)"))

    def as_json(self) -> dict:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# -- reading ------------------------------------------------------------------------------


@dataclass
class _Parsed:
    meta: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)
    sent: dict = field(default_factory=dict)  # (client, seq) -> attempts
    sent_times: list = field(default_factory=list)  # when each attempt was sent
    answers: dict = field(default_factory=lambda: defaultdict(list))  # (client, seq) -> committed records
    failed: dict = field(default_factory=dict)
    unknown: dict = field(default_factory=dict)
    faults: list = field(default_factory=list)
    poisons: list = field(default_factory=list)
    exits: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    first_at: float = 0.0
    last_at: float = 0.0


def _parse(path: Path) -> _Parsed:
    parsed = _Parsed()
    for record in read_history(path):
        kind = record.get("type")
        at = float(record.get("at", 0.0))
        parsed.first_at = parsed.first_at or at
        parsed.last_at = max(parsed.last_at, at)
        key = (record.get("client"), record.get("seq"))
        if kind == "meta":
            parsed.meta = record
        elif kind == "final":
            parsed.final = record
        elif kind == "sent":
            parsed.sent[key] = max(parsed.sent.get(key, 0), int(record.get("attempt", 1)))
            parsed.sent_times.append(at)
        elif kind == "committed":
            parsed.answers[key].append(record)
        elif kind == "failed":
            parsed.failed[key] = record
        elif kind == "unknown":
            parsed.unknown[key] = record
        elif kind == "fault":
            parsed.faults.append(record)
        elif kind == "poison":
            parsed.poisons.append(record)
        elif kind == "exit":
            parsed.exits.append(record)
        elif kind == "violation":
            parsed.violations.append(record)
        elif kind == "deadletters":
            parsed.dead_letters.append(record)
    return parsed


def read_archive(location: str) -> list:
    with PostgresEventLog(location) as log:
        return [entry for batch in log.read(1) for entry in batch]


# -- the checks -----------------------------------------------------------------------------


def check(history_path: Path, archives: dict[str, str] | None = None) -> CheckResult:
    """Check a history against the archives ({node: location}; the history's own by default)."""
    parsed = _parse(history_path)
    result = CheckResult(cluster=parsed.meta.get("cluster", ""), seed=parsed.meta.get("seed"))
    result.elapsed = round(parsed.last_at - parsed.first_at, 1)
    archives = archives or parsed.meta.get("archives") or {}
    if not archives:
        result.fail(CONVERGES, "no archive to check: give --archives NODE=URL ...")
        return result
    logs: dict[str, list] = {}
    for node, location in archives.items():
        summary = ArchiveSummary(node, location)
        result.archives.append(summary)
        try:
            logs[node] = read_archive(location)
        except Exception as error:  # an archive that cannot be read is reported, not fatal
            summary.error = f"{type(error).__name__}: {error}"
            result.fail(CONVERGES, f"archive of {node} could not be read: {summary.error}")
    if not logs:
        return result
    leader = _final_leader(parsed, logs)
    result.leader = leader
    _check_commands(parsed, result)
    _check_logs(logs, result)
    _check_committed(parsed, logs[leader], leader, result)
    _check_prefixes(logs, leader, result)
    _check_executions(parsed, logs, result)
    _check_digests(logs, result)
    _check_terms(parsed, logs, result)
    _check_poison(parsed, result)
    _check_recovery(parsed, result)
    _check_exits_and_drill(parsed, result)
    return result


def _final_leader(parsed: _Parsed, logs: dict[str, list]) -> str:
    named = parsed.final.get("leader")
    if named in logs:
        return named
    return max(logs, key=lambda node: ((logs[node][-1].term, len(logs[node])) if logs[node] else (0, 0)))


def _check_commands(parsed: _Parsed, result: CheckResult) -> None:
    answered = set(parsed.answers)
    result.commands = {
        "sent": len(parsed.sent),
        "committed": len(answered),
        "answers": sum(len(answers) for answers in parsed.answers.values()),
        "answered_as_duplicates": sum(1 for answers in parsed.answers.values() for a in answers if a.get("duplicate")),
        "retried": sum(1 for attempts in parsed.sent.values() if attempts > 1),
        "failed": len(parsed.failed),
        "unknown": len(set(parsed.unknown) - answered),
    }
    for key, record in parsed.unknown.items():
        if key not in answered:
            result.fail(EVERY_COMMAND_ANSWERED, f"{key[0]}#{key[1]} got no answer by the end of the drill: {record.get('reason', '')[:200]}")
    for key, answers in parsed.answers.items():
        seen = {(a["position"], a["count"], a["digest"]) for a in answers}
        if len(seen) > 1:
            result.fail(COMMITTED_RESULTS_SURVIVE, f"{key[0]}#{key[1]} was answered differently: {sorted(seen)[:3]}")


def _check_logs(logs: dict[str, list], result: CheckResult) -> None:
    for summary in result.archives:
        log = logs.get(summary.node)
        if log is None:
            continue
        summary.entries = len(log)
        summary.last_term = log[-1].term if log else 0
        term = 0
        for index, entry in enumerate(log, start=1):
            if entry.position != index:
                result.fail(POSITIONS_CONTIGUOUS, f"{summary.node}: position {entry.position} where {index} was expected (a gap)")
                break
            if entry.term < term:
                result.fail(TERMS_NEVER_DECREASE, f"{summary.node}: term {entry.term} at position {index} after term {term}")
            term = max(term, entry.term)


def _check_committed(parsed: _Parsed, leader_log: list, leader: str, result: CheckResult) -> None:
    """Every committed answer is in the final leader's log at its position, same payloads."""
    commit = 0
    for key, answers in parsed.answers.items():
        for answer in answers:
            first, count = int(answer["position"]), int(answer["count"])
            commit = max(commit, first + count - 1)
            entries = leader_log[first - 1 : first - 1 + count] if first >= 1 else []
            if len(entries) < count:
                result.fail(COMMITTED_RESULTS_SURVIVE,
                            f"LOST: {key[0]}#{key[1]} was committed at positions {first}..{first + count - 1}, "
                            f"but the final leader {leader}'s log ends at {len(leader_log)}")  # fmt: skip
            elif payload_digest([entry.payload for entry in entries]) != answer["digest"]:
                terms = sorted({entry.term for entry in entries})
                result.fail(COMMITTED_RESULTS_SURVIVE,
                            f"LOST: {key[0]}#{key[1]} was committed at positions {first}..{first + count - 1}, but "
                            f"{leader}'s log holds other events there (term {terms})")  # fmt: skip
    result.commit_position = commit


def _check_prefixes(logs: dict[str, list], leader: str, result: CheckResult) -> None:
    """Every archive equals the leader's log up to the commit point, and (settled) all of it."""
    leader_log = logs[leader]
    commit = result.commit_position
    for node, log in logs.items():
        if node == leader:
            continue
        upto = min(commit, len(log), len(leader_log))
        for index in range(upto):
            if log[index] != leader_log[index]:
                result.fail(LOGS_ARE_PREFIXES,
                            f"{node} differs from the leader {leader} at position {index + 1} "
                            f"(term {log[index].term} vs {leader_log[index].term}), below the commit point {commit}")  # fmt: skip
                break
        if len(log) < commit:
            result.fail(CONVERGES, f"{node} holds {len(log)} events, fewer than the commit point {commit}")
        elif log != leader_log:
            result.fail(CONVERGES, f"{node} did not end equal to the leader {leader} ({len(log)} vs {len(leader_log)} events)")


def _check_executions(parsed: _Parsed, logs: dict[str, list], result: CheckResult) -> None:
    """No command executed twice in any log; every answer points at the one execution."""
    executed_in_leader: dict[tuple, int] = {}
    for summary in result.archives:
        log = logs.get(summary.node)
        if not log:
            continue
        executions = _executions(log)
        summary.executions = len(executions)
        for key, positions in executions.items():
            if len(positions) > 1:
                result.fail(COMMANDS_EXECUTE_ONCE, f"{summary.node}: {key[0]}#{key[1]} executed {len(positions)} times, at positions {positions[:5]}")
        if summary.node == result.leader:
            executed_in_leader = {key: positions[0] for key, positions in executions.items()}
    for key, answers in parsed.answers.items():
        at = executed_in_leader.get(key)
        for answer in answers:
            if at is not None and int(answer["position"]) != at:
                result.fail(COMMANDS_EXECUTE_ONCE,
                            f"{key[0]}#{key[1]} was answered from position {answer['position']}, but executed at {at}")  # fmt: skip


def _executions(log: list) -> dict[tuple, list[int]]:
    """(client_id, client_seq) -> the positions where a run of its events began, counting
    only runs that executed it (not a CommandDuplicate, not a sequence rejection)."""
    executions: dict[tuple, list[int]] = defaultdict(list)
    previous = None
    for start in range(0, len(log), 5000):
        chunk = log[start : start + 5000]
        for entry, event in zip(chunk, decode_events([e.payload for e in chunk]), strict=True):
            key = (event.client_id, event.client_seq)
            if key == previous:
                continue
            previous = key
            if isinstance(event, CommandDuplicate):
                continue
            if isinstance(event, OrderRejected) and event.reason in _UNRECORDED:
                continue
            executions[key].append(entry.position)
    return executions


def _check_digests(logs: dict[str, list], result: CheckResult) -> None:
    """Replay each archive into a fresh engine: equal digests at the position all hold."""
    common = min(len(log) for log in logs.values())
    result.common_position = common
    for summary in result.archives:
        log = logs.get(summary.node)
        if log is None:
            continue
        try:
            summary.common_digest, summary.digest = _replay(log, common)
        except (EngineError, CodecError) as error:
            summary.error = f"replay failed: {error}"
            result.fail(EQUAL_STATE_DIGESTS, f"{summary.node}'s archive does not replay into a state: {error}")
    digests = {summary.node: summary.common_digest for summary in result.archives if summary.common_digest}
    if len(set(digests.values())) > 1:
        result.fail(EQUAL_STATE_DIGESTS, f"different states at position {common}: "
                    + ", ".join(f"{node} {digest[:12]}" for node, digest in digests.items()))  # fmt: skip


def _replay(log: list, common: int) -> tuple[str, str]:
    """The digests of a fresh engine fed the log: at position `common`, and at the end."""
    engine = Engine()
    common_digest = engine.digest() if common == 0 else ""
    for start in range(0, len(log), 5000):
        chunk = log[start : start + 5000]
        if start < common <= start + len(chunk):
            cut = common - start
            engine.apply_batch(decode_events([e.payload for e in chunk[:cut]]))
            common_digest = engine.digest()
            engine.apply_batch(decode_events([e.payload for e in chunk[cut:]]))
        else:
            engine.apply_batch(decode_events([e.payload for e in chunk]))
    return common_digest, engine.digest()


def _check_terms(parsed: _Parsed, logs: dict[str, list], result: CheckResult) -> None:
    """One leader per term: the role-change audit, the nodes' own "leading term" lines,
    and the terms the logs were written in must agree."""
    changes = parsed.final.get("role_changes") or []
    claims = parsed.final.get("leader_claims") or []
    elected = {int(change["term"]): change.get("new_leader") for change in changes}
    claimed: dict[int, set[str]] = defaultdict(set)
    for claim in claims:
        claimed[int(claim["term"])].add(claim["node"])
    written = sorted({entry.term for log in logs.values() for entry in log})
    for term, nodes in sorted(claimed.items()):
        if len(nodes) > 1:
            result.fail(ONE_LEADER_PER_TERM, f"term {term} was led by {sorted(nodes)} (node logs)")
        if changes and elected.get(term) not in nodes:
            result.fail(ONE_LEADER_PER_TERM, f"term {term}: {sorted(nodes)} led it, but the role changes name {elected.get(term)}")
    if changes:
        for term in written:
            if not elected.get(term):
                result.fail(ONE_LEADER_PER_TERM, f"events of term {term} exist, but no leader was ever assigned in term {term}")
    result.terms = {
        "final_term": parsed.final.get("term"),
        "role_changes": len(changes),
        "terms_with_leader": sum(1 for leader in elected.values() if leader),
        "terms_in_logs": len(written),
        "leaders_seen_in_node_logs": len(claimed),
    }


def _check_poison(parsed: _Parsed, result: CheckResult) -> None:
    by_stream: dict[str, dict] = defaultdict(lambda: {"injected": 0, "handled": 0})
    for poison in parsed.poisons:
        stats = by_stream[poison["stream"]]
        stats["injected"] += 1
        if poison.get("handled"):
            stats["handled"] += 1
        else:
            result.fail(POISON_SET_ASIDE, f"poison {poison['entry']} on {poison['key']}: {poison.get('outcome', 'no outcome recorded')}")
    totals: dict[str, int] = defaultdict(int)
    repeated: dict[str, dict] = {}
    for snapshot in parsed.dead_letters:
        for stream, count in (snapshot.get("counts") or {}).items():
            totals[stream] += int(count)  # each snapshot was taken right before Redis emptied it
        for entry, seen in (snapshot.get("entries") or {}).items():
            if isinstance(seen, dict) and seen.get("count", 0) > len(seen.get("nodes", {})):
                repeated[entry] = seen  # one node set the same entry aside again and again
    result.dead_letters = {"poison": dict(by_stream), "set_aside_by_stream": dict(totals), "set_aside_repeatedly": repeated}


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _check_recovery(parsed: _Parsed, result: CheckResult) -> None:
    """From each fault to the first committed answer of a command attempt sent after it
    (and received once the service was back, for a server restart)."""
    commits = sorted(
        (float(a["sent_at"]), float(a["at"])) for answers in parsed.answers.values() for a in answers if "sent_at" in a
    )
    by_variant: dict[str, list[float]] = defaultdict(list)
    by_kind: dict[str, list[float]] = defaultdict(list)
    stalls: dict[str, list[float]] = defaultdict(list)
    done_times = sorted(done for _, done in commits)
    for fault in parsed.faults:
        row = {key: fault.get(key) for key in ("index", "kind", "variant", "target", "detail", "at", "end", "skipped")}
        if fault.get("skipped"):
            result.faults.append(row)
            continue
        began = float(fault["at"])
        back = float(fault.get("service_back") or began)
        after = [done for sent, done in commits if sent >= began and done >= back]
        row["recovery_s"] = None
        if after:
            row["recovery_s"] = round(min(after) - began, 3)
            by_variant[fault["variant"]].append(row["recovery_s"])
            by_kind[fault["kind"]].append(row["recovery_s"])
            row["stall_s"] = _longest_stall(done_times, commits, began, max(back, float(fault.get("end") or began)))
            if row["stall_s"] is not None:
                stalls[fault["variant"]].append(row["stall_s"])
        elif any(sent >= began for sent in parsed.sent_times):
            result.fail(RECOVERS, f"no command sent after fault {fault.get('index')} ({fault['variant']} {fault['target']}) was ever committed")
        else:
            row["note"] = "not measured: no command was sent after it"
        result.faults.append(row)
    result.recovery = {variant: _summary(values) for variant, values in sorted(by_variant.items())}
    result.recovery_by_kind = {kind: _summary(values) for kind, values in sorted(by_kind.items())}
    everything = [value for values in by_variant.values() for value in values]
    if everything:
        result.recovery["all faults"] = result.recovery_by_kind["all faults"] = _summary(everything)
    result.stalls = {variant: _summary(values) for variant, values in sorted(stalls.items())}


def _longest_stall(done_times: list[float], commits: list[tuple[float, float]], began: float, ended: float) -> float | None:
    """The longest gap between commits from `began` until the first commit of a command
    sent once the fault had ended (`ended`); None if there is none."""
    later = [done for sent, done in commits if sent >= ended]
    if not later:
        return None
    until = min(later)
    inside = done_times[bisect.bisect_left(done_times, began) : bisect.bisect_right(done_times, until)]
    points = [began, *inside]
    return round(max((b - a for a, b in itertools.pairwise(points)), default=until - began), 3)


def _summary(values: list[float]) -> dict:
    return {"count": len(values), "p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "max": max(values)}


def _check_exits_and_drill(parsed: _Parsed, result: CheckResult) -> None:
    for record in parsed.exits:
        result.exits.append({key: record.get(key) for key in ("process", "code", "quiet", "at", "log")})
        if record.get("quiet"):
            result.fail(NO_QUIET_EXITS, f"{record['process']} exited with status 0 without being asked (log: {record.get('log')})")
    for record in parsed.violations:
        result.fail(record.get("invariant", RECOVERS), record.get("detail", ""))
