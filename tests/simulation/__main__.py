"""Command line: many seeds (`--seeds N`), or one seed replayed with its trace (`--seed S --trace`).

    python -m tests.simulation --seeds 1000000 --jobs 2
    python -m tests.simulation --seeds 20000 --legacy          # the old rules: finds losses
    python -m tests.simulation --seeds 5000 --rule fenced_delivery=false --scenario deposed
    python -m tests.simulation --seed 1281 --trace --rule fenced_delivery=false --scenario deposed

Exits 1 when any seed breaks an invariant (safety or liveness) and prints how to replay it.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.simulation.faults import SCENARIOS
from tests.simulation.rules import Options, Rules
from tests.simulation.runner import Summary, replay_command, run_seeds
from tests.simulation.simulator import run_seed

SHOWN = 3  # full reports printed for the first failing seeds


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds to run (default 1000)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--trace", action="store_true", help="with --seed: print the run's trace (every action that changes state)")
    parser.add_argument("--legacy", action="store_true", help="the four old (unsafe) rules together")
    parser.add_argument("--rule", action="append", default=[], metavar="NAME=VALUE", help="one old rule, e.g. election=position (repeatable)")
    parser.add_argument("--steps", type=int, default=Options().steps, help="events in the fault phase of each seed")
    parser.add_argument("--replicas", type=int, help="N followers (default: drawn per seed, 2-4)")
    parser.add_argument("--quorum", type=int, help="write quorum W (default: drawn per seed)")
    parser.add_argument("--scenario", default="mixed", choices=sorted(SCENARIOS), help="bias the faults (default mixed)")
    parser.add_argument("--no-liveness", action="store_true", help="skip healing and the convergence check")
    parser.add_argument("--paranoid", action="store_true", help="also recheck every invariant from scratch after every step")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--stop-on-first", action="store_true", help="stop at the first safety violation")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--findings", metavar="FILE", help="write every failing seed's report to FILE (all of them, not only the first)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        rules = Rules.parse(args.rule, Rules.legacy() if args.legacy else None)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = Options(
        steps=args.steps,
        replicas=args.replicas,
        quorum=args.quorum,
        scenario=args.scenario,
        liveness=not args.no_liveness,
        paranoid=args.paranoid,
    )
    if args.seed is not None:
        return replay(args.seed, rules, options, args.trace)
    print(f"seeds {args.start}..{args.start + args.seeds - 1}, {rules.describe()}, scenario {options.scenario}, {args.jobs} job(s)")
    summary = run_seeds(
        args.start,
        args.seeds,
        rules,
        options,
        jobs=args.jobs,
        stop_on_first=args.stop_on_first,
        progress=None if args.quiet else sys.stderr,
    )
    if args.findings:
        write_findings(args.findings, summary, rules, options)
    return report(summary, rules, options)


def write_findings(path: str, summary: Summary, rules: Rules, options: Options) -> None:
    """Every finding: a line `seed invariant` each, then each full report with its replay command."""
    with open(path, "w", encoding="utf-8") as out:
        for finding in summary.findings:
            out.write(f"{finding.seed} {finding.invariant}\n")
        for finding in summary.findings:
            out.write(f"\n{finding.report}\nreplay: {replay_command(finding.seed, rules, options)}\n")


def replay(seed: int, rules: Rules, options: Options, trace: bool) -> int:
    began = time.perf_counter()
    outcome = run_seed(seed, rules, options)
    elapsed = time.perf_counter() - began
    if trace:
        print("\n".join(outcome.lines()))
    print(f"seed {seed}: {outcome.shape}")
    print(f"{outcome.steps} events, simulated time {outcome.time}, trace digest {outcome.digest()}, {elapsed * 1000:.1f} ms")
    if outcome.violation is None:
        print("all invariants held" + ("" if not options.liveness else "; the cluster converged after healing"))
        return 0
    print(outcome.violation.report())
    return 1


def report(summary: Summary, rules: Rules, options: Options) -> int:
    print(
        f"{summary.seeds:,} seeds, {summary.steps:,} events in {summary.wall:.1f} s: "
        f"{summary.rate():,.0f} seeds/s ({summary.seeds / summary.cpu if summary.cpu else 0:,.0f} per CPU second), "
        f"{len(summary.safety)} safety violations, {len(summary.liveness)} liveness failures"
    )
    if not summary.findings:
        return 0
    by_invariant: dict[str, list[int]] = {}
    for finding in summary.findings:
        by_invariant.setdefault(finding.invariant, []).append(finding.seed)
    for invariant, seeds in sorted(by_invariant.items()):
        more = f" (+{len(seeds) - 10} more)" if len(seeds) > 10 else ""
        print(f"  {invariant}: seeds {', '.join(map(str, seeds[:10]))}{more}")
    for finding in summary.findings[:SHOWN]:
        print()
        print(finding.report)
        print(f"replay: {replay_command(finding.seed, rules, options)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
