"""Run the Procfile's processes together, like foreman, but a process that dies does not
take the others with it, and one that fails is restarted after a pause, as systemd would:
killing the leader's worker is how an operator tries a failover on the demo cluster, and
the killed node then rejoins as a follower. `manage.py runlocal` is its entry point."""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class ProcfileError(ValueError):
    """A Procfile line or a process name that cannot be used."""


COLOURS = ["36", "33", "32", "35", "34", "31", "96", "93"]


def read_procfile(path: Path) -> list[tuple[str, str]]:
    processes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise ProcfileError(f"{path}:{number}: expected 'name: command', got {line!r}")
        processes.append((name.strip(), command.strip()))
    return processes


def program(command: str) -> str:
    """The program a Procfile line runs, past a leading `env VAR=value ...`."""
    words = shlex.split(command)
    if words and words[0] == "env":
        words = [word for word in words[1:] if "=" not in word] or words
    return words[0]


REFUSED = 78  # a node the control plane refuses (nodes.runtime.EXIT_REFUSED): restarting won't help


def run(processes: list[tuple[str, str]], base_dir: Path, restart_after: float) -> None:
    """Start every (name, command), prefix their output, restart the ones that fail, and
    stop them all on SIGINT or SIGTERM."""
    width = max(len(name) for name, _ in processes)
    lock = threading.Lock()
    children: dict[str, subprocess.Popen] = {}

    def say(name: str, colour: str, text: str) -> None:
        with lock:
            sys.stdout.write(f"\033[{colour}m{time.strftime('%H:%M:%S')} {name:<{width}} |\033[0m {text}")
            sys.stdout.flush()

    stop = threading.Event()

    def pump(name: str, command: str, colour: str, child: subprocess.Popen) -> None:
        for raw in iter(child.stdout.readline, b""):
            say(name, colour, raw.decode(errors="replace"))
        code = child.wait()
        if stop.is_set():
            return
        if code in (0, REFUSED) or restart_after <= 0:
            why = " (refused by the control plane: see its log)" if code == REFUSED else ""
            say("system", "0", f"{name} exited with code {code}{why}; the others keep running\n")
            return
        say("system", "0", f"{name} exited with code {code}; restarting it in {restart_after:.0f} s\n")
        if not stop.wait(restart_after):
            launch(name, command, colour)

    def launch(name: str, command: str, colour: str) -> None:
        child = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],  # the pid shown is the process itself
            cwd=base_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **redis_user_env(name, base_dir)},
            start_new_session=True,  # its own process group: signals reach its children
        )
        children[name] = child
        say("system", "0", f"{name} started as pid {child.pid}: {program(command)} ...\n")
        threading.Thread(target=pump, args=(name, command, colour, child), daemon=True).start()

    for (name, command), colour in zip(processes, itertools.cycle(COLOURS), strict=False):
        launch(name, command, colour)
    # The handler only records the signal: it runs in this thread between two bytecodes,
    # maybe inside stop.wait() holding the event's lock, and stop.set() there took that
    # lock again and hung for good (SIGTERM to `make run` stopped nothing).
    signalled: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, _frame: signalled.append(signum))
    while not signalled:
        time.sleep(0.2)
    stop.set()
    say("system", "0", "stopping every process\n")
    for child in children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children.values():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)


def redis_user_env(name: str, base_dir: Path) -> dict[str, str]:
    """The Redis user of a process (`manage.py redis_acl --apply`, run by `make run`):
    tec-node for the nodes, tec-controlplane for the rest; none when not configured."""
    user = "tec-node" if name.startswith("node") else "tec-controlplane"
    url_file = base_dir / "run" / f"redis-{user}.url"
    if not url_file.exists():
        return {}
    url = url_file.read_text().strip()
    return {"REDIS_URL": url, "CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
