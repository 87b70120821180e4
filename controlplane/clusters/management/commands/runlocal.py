"""`manage.py runlocal`: the Procfile's processes together on this machine (dev/procfile.py)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dev.procfile import ProcfileError, read_procfile, run


class Command(BaseCommand):
    help = (
        "Start every process of the Procfile (control plane, nodes, supervisor), prefix their "
        "output, keep the others running when one exits, and stop them all on Ctrl-C."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--procfile", default=str(Path(settings.BASE_DIR) / "Procfile"))
        parser.add_argument("--only", nargs="*", help="start only these process names")
        parser.add_argument(
            "--restart-after",
            type=float,
            default=3.0,
            help="seconds before restarting a process that exited with an error (0: never)",
        )

    def handle(
        self, *args, procfile: str, only: list[str] | None, restart_after: float, **options
    ) -> None:
        try:
            processes = read_procfile(Path(procfile))
        except ProcfileError as error:
            raise CommandError(str(error)) from None
        if only:
            unknown = set(only) - {name for name, _ in processes}
            if unknown:
                raise CommandError(f"no process named {', '.join(sorted(unknown))} in {procfile}")
            processes = [(n, c) for n, c in processes if n in only]
        run(processes, Path(settings.BASE_DIR), restart_after)
