"""Snapshots without a stall: a forked child writes the engine's copy-on-write image (Redis BGSAVE).

The loop thread pays only for the fork (page tables: ~10 ms for a million resting
orders). The child serialises the engine as it was at the fork, with its digest, and
stores it in the node's archive over a connection of its own; the parent's threads and
connections go on untouched (the child never uses them and leaves with os._exit, so no
destructor of an inherited connection runs).

A snapshot at position P must only be stored once the archive holds P with exactly the
events this engine applied (a leader's archive thread may still be writing P, or fail
and make the node rebuild). So the child waits for the parent's word on a pipe: "go"
once the archive reached P while this engine is still the node's engine, "abandon" if
the engine was replaced (rebuilt from the archive) first. A parent that dies closes the
pipe: the child then stores nothing and exits.

After storing, the child reads the snapshot back and checks that its bytes hash to its
digest: a snapshot is *verified* only then (retention cuts only below a verified one),
and restore() checks the digest against the restored state again.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nodes.adapters import Adapters
from nodes.engine import Engine

KEEP_SNAPSHOTS = 3
CHILD_WAIT_S = 600.0  # a child told nothing for this long gives up (parent wedged)
_GO, _ABANDON = b"g", b"a"


@dataclass
class SnapshotJob:
    """One snapshot being written by a child process."""

    pid: int
    engine: Engine  # the engine forked: "go" only while it is still the node's
    position: int
    started: float  # monotonic
    fork_s: float  # how long the loop thread was held by the fork
    go_fd: int
    result_fd: int
    told: bytes = b""
    result: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True)
class SnapshotDone:
    position: int
    ok: bool
    status: str
    seconds: float
    fork_s: float


class Snapshotter:
    """Forks snapshot children and follows them, from the node's loop thread only. The
    children store into the archive at `location` through `adapters` (without them, the
    PostgreSQL ones)."""

    def __init__(self, location: str, adapters: Adapters | None = None, keep: int = KEEP_SNAPSHOTS) -> None:
        self.location = location
        self.adapters = adapters or Adapters()
        self.keep = keep
        self.job: SnapshotJob | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, engine: Engine) -> str:
        """Fork a child that snapshots `engine` as it is now; returns a status sentence."""
        if self.job is not None:
            return f"a snapshot at position {self.job.position} is still being written"
        go_read, go_write = os.pipe()
        result_read, result_write = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(go_write)
            os.close(result_read)
            _child(engine, self.adapters, self.location, self.keep, go_read, result_write)
        fork_s = time.monotonic() - started
        os.close(go_read)
        os.close(result_write)
        os.set_blocking(result_read, False)
        self.job = SnapshotJob(pid, engine, engine.position, started, fork_s, go_write, result_read)
        return f"snapshot at position {engine.position} started in process {pid} (fork {fork_s * 1000:.1f} ms)"

    def poll(self, current: Engine, archived: int) -> SnapshotDone | None:
        """Tell the child whether to store (once), reap it when done. Never blocks."""
        job = self.job
        if job is None:
            return None
        if not job.told:
            if current is not job.engine:
                self._tell(job, _ABANDON)
            elif archived >= job.position:
                self._tell(job, _GO)
        self._drain(job)
        try:
            pid, status = os.waitpid(job.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = job.pid, 0
        if pid == 0:
            return None
        self._drain(job)
        return self._finish(job, status)

    def finish(self, current: Engine, archived: Callable[[], int], timeout: float) -> SnapshotDone | None:
        """At stop: let a child whose position is archived complete; abandon any other."""
        deadline = time.monotonic() + timeout
        while self.job is not None:
            done = self.poll(current, archived())
            if done is not None or self.job is None:
                return done
            if time.monotonic() > deadline:
                job = self.job
                with contextlib.suppress(ProcessLookupError):
                    os.kill(job.pid, signal.SIGKILL)  # our own child, by its pid
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(job.pid, 0)
                self._close(job)
                self.job = None
                return SnapshotDone(job.position, False, "snapshot abandoned at stop", 0.0, job.fork_s)
            if not self.job.told:
                self._tell(self.job, _ABANDON if current is not self.job.engine or archived() < self.job.position else _GO)
            time.sleep(0.02)
        return None

    def _tell(self, job: SnapshotJob, word: bytes) -> None:
        job.told = word
        with contextlib.suppress(OSError):  # the child may have died already
            os.write(job.go_fd, word)

    def _drain(self, job: SnapshotJob) -> None:
        while True:
            try:
                chunk = os.read(job.result_fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            job.result += chunk

    def _finish(self, job: SnapshotJob, status: int) -> SnapshotDone:
        self._close(job)
        self.job = None
        seconds = time.monotonic() - job.started
        message = job.result.decode(errors="replace").strip()
        code = os.waitstatus_to_exitcode(status)
        ok = code == 0 and message.startswith("ok ")
        if ok:
            text = f"snapshot taken at position {job.position} (digest {message[3:19]}, {seconds:.2f} s in a forked process)"
        elif job.told == _ABANDON:
            text = f"snapshot at position {job.position} abandoned: the state was rebuilt meanwhile"
        else:
            text = f"snapshot at position {job.position} failed (exit {code}): {message or 'no message'}"
        return SnapshotDone(job.position, ok, text, seconds, job.fork_s)

    @staticmethod
    def _close(job: SnapshotJob) -> None:
        for fd in (job.go_fd, job.result_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _child(engine: Engine, adapters: Adapters, location: str, keep: int, go_fd: int, result_fd: int) -> None:
    """The forked child: serialise, wait for the word, store, verify, exit. Never returns."""
    code = 1
    try:
        # Only this thread exists here. Signals meant for the node (SIGTERM from its
        # runner) must not run the node's handlers in this copy of it; no collection may
        # finalise an inherited object (a connection's destructor would talk on the
        # parent's socket).
        gc.disable()
        # Background work: the node's threads (the loop above all) go first for the CPU.
        with contextlib.suppress(OSError):
            os.nice(10)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
            with contextlib.suppress(OSError, ValueError):
                signal.signal(signum, signal.SIG_DFL)
        data = engine.snapshot()
        digest = Engine.snapshot_digest(data)
        position = engine.position
        ready, _, _ = select.select([go_fd], [], [], CHILD_WAIT_S)
        word = os.read(go_fd, 1) if ready else b""
        if word != _GO:
            code = 3  # abandoned, or the parent is gone: store nothing
        else:
            log, store = adapters.event_log(location), adapters.snapshot_store(location)
            with contextlib.closing(log), contextlib.closing(store):
                term = log.term_at(position)
                if term is None:
                    raise RuntimeError(f"the archive does not hold position {position}")
                store.save(position, term, digest, data)
                stored = store.latest(at_or_below=position)
                if stored is None or stored.position != position or not verified(stored.data, stored.digest):
                    raise RuntimeError("the snapshot read back does not match its digest")
                store.prune(keep=keep)
            os.write(result_fd, f"ok {digest}".encode())
            code = 0
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.write(result_fd, f"{type(error).__name__}: {error}"[:2000].encode())
        code = 1
    finally:
        os._exit(code)


def verified(data: bytes, digest: str) -> bool:
    """The snapshot's bytes hash to the digest they carry and were stored with (cheap: no
    restore; restore() compares the digest with the restored state too)."""
    try:
        return Engine.snapshot_digest(data) == digest and Engine.body_digest(data) == digest
    except Exception:
        return False
