"""The control plane's Celery application: the supervisor's beat task and worker.

The nodes have an app of their own (nodes/celery_app.py) with no Django; the control
plane reaches a node by sending it the `nodes.request` task, by name, on the node's own
queue (wire/rpc.py).
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
