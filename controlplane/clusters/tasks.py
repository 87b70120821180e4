"""Celery tasks of the control plane (run by beat every second)."""

from __future__ import annotations

from celery import shared_task

from controlplane.clusters import supervisor


@shared_task(name="controlplane.supervise", ignore_result=True, expires=5)
def supervise() -> list[str]:
    return supervisor.run_all()
