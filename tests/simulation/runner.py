"""Running many seeds: in this process or over several, with a progress line on stderr."""

from __future__ import annotations

import multiprocessing
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from tests.simulation.rules import Options, Rules
from tests.simulation.simulator import run_seed

CHUNK = 250  # seeds a worker process runs per task


@dataclass(frozen=True)
class Finding:
    """A seed that broke an invariant, in plain values (it crosses process boundaries)."""

    seed: int
    invariant: str
    liveness: bool
    report: str


@dataclass
class Summary:
    """What a run of many seeds found, and how fast it went."""

    seeds: int = 0
    steps: int = 0
    findings: list[Finding] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds spent running seeds, summed over worker processes

    @property
    def safety(self) -> list[Finding]:
        return [f for f in self.findings if not f.liveness]

    @property
    def liveness(self) -> list[Finding]:
        return [f for f in self.findings if f.liveness]

    def rate(self) -> float:
        return self.seeds / self.wall if self.wall > 0 else 0.0


def run_chunk(task: tuple[int, int, Rules, Options, bool]) -> Summary:
    """Seeds start .. start + count - 1 in this process (a worker's task)."""
    start, count, rules, options, stop_on_first = task
    summary = Summary()
    began = time.process_time()
    for seed in range(start, start + count):
        outcome = run_seed(seed, rules, options)
        summary.seeds += 1
        summary.steps += outcome.steps
        violation = outcome.violation
        if violation is not None:
            summary.findings.append(Finding(seed, violation.invariant, violation.liveness, violation.report()))
            if stop_on_first and not violation.liveness:
                break
    summary.cpu = time.process_time() - began
    return summary


def _tasks(start: int, count: int, rules: Rules, options: Options, stop_on_first: bool) -> Iterator[tuple[int, int, Rules, Options, bool]]:
    for first in range(start, start + count, CHUNK):
        yield (first, min(CHUNK, start + count - first), rules, options, stop_on_first)


def run_seeds(
    start: int,
    count: int,
    rules: Rules,
    options: Options,
    *,
    jobs: int = 1,
    stop_on_first: bool = False,
    progress: TextIO | None = None,
) -> Summary:
    """Run seeds start .. start + count - 1; with stop_on_first, stop at the first safety
    violation (in seed order when jobs == 1; some seed's first with more jobs)."""
    total = Summary()
    bar = Progress(count, progress)
    began = time.perf_counter()
    tasks = _tasks(start, count, rules, options, stop_on_first)
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        results = pool.imap(run_chunk, tasks) if pool is not None else map(run_chunk, tasks)
        for part in results:
            total.seeds += part.seeds
            total.steps += part.steps
            total.cpu += part.cpu
            total.findings += part.findings
            total.wall = time.perf_counter() - began
            bar.update(total)
            if stop_on_first and total.safety:
                break
    finally:
        if pool is not None:
            pool.terminate()
    total.findings.sort(key=lambda f: f.seed)
    total.wall = time.perf_counter() - began
    bar.close(total)
    return total


class Progress:
    """seeds done, seeds/s, violations: tqdm when installed, else one line on stderr."""

    def __init__(self, count: int, stream: TextIO | None) -> None:
        self.count = count
        self.stream = stream
        self.shown = 0.0
        self.tqdm = None
        if stream is not None:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.tqdm = tqdm(total=count, unit="seed", file=stream, smoothing=0.1)

    def update(self, summary: Summary) -> None:
        if self.stream is None:
            return
        if self.tqdm is not None:
            self.tqdm.update(summary.seeds - self.tqdm.n)
            self.tqdm.set_postfix(violations=len(summary.safety), liveness=len(summary.liveness))
            return
        now = time.perf_counter()
        if now - self.shown >= 0.5 or summary.seeds >= self.count:
            self.shown = now
            self.stream.write("\r" + self.line(summary))
            self.stream.flush()

    def line(self, summary: Summary) -> str:
        share = summary.seeds / self.count if self.count else 1.0
        return (
            f"{summary.seeds:>10,}/{self.count:,} seeds {share:6.1%}  {summary.rate():8,.0f} seeds/s  "
            f"{len(summary.safety)} violations  {len(summary.liveness)} liveness"
        )

    def close(self, summary: Summary) -> None:
        if self.stream is None:
            return
        if self.tqdm is not None:
            self.tqdm.close()
            return
        self.stream.write("\r" + self.line(summary) + "\n")
        self.stream.flush()


def replay_command(seed: int, rules: Rules, options: Options) -> str:
    """The command line that replays one seed exactly and prints its trace."""
    words = ["python", "-m", "tests.simulation", "--seed", str(seed), "--trace"]
    words += option_words(rules, options)
    return " ".join(shlex.quote(w) for w in words)


def option_words(rules: Rules, options: Options) -> list[str]:
    words: list[str] = []
    for rule in rules.unsafe():
        words += ["--rule", rule]
    default = Options()
    if options.steps != default.steps:
        words += ["--steps", str(options.steps)]
    if options.replicas is not None:
        words += ["--replicas", str(options.replicas)]
    if options.quorum is not None:
        words += ["--quorum", str(options.quorum)]
    if options.scenario != default.scenario:
        words += ["--scenario", options.scenario]
    if not options.liveness:
        words += ["--no-liveness"]
    return words
