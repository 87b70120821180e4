"""gunicorn settings for the control plane, read from the environment like everything else.

    gunicorn -c python:controlplane.gunicorn_conf controlplane.wsgi

Threads, not processes, carry the concurrency: most requests are short (heartbeats every
0.5 s from each node, the dashboard's poll every second), but some block while the
cluster acts: a switchover waits up to its `timeout` (at most 120 s, the API's limit) for
the target to catch up, a command submission up to 60 s for its commit. A blocked request
holds one thread, not a process, and the worker timeout is longer than the longest of
them, so gunicorn never kills a worker in the middle of a switchover.
"""

from __future__ import annotations

from gunicorn import glogging

from base.env import env_bool, env_int, env_str

LONGEST_BLOCKING_REQUEST_S = 120  # SwitchoverSerializer.timeout's max_value

bind = env_str("WEB_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = env_int("WEB_WORKERS", 2, minimum=1)
# Threads are cheap while they wait: a submission awaiting its commit, a request waiting
# for its turn. Database connections are what is scarce, and the turns bound them
# (controlplane/admission.py: API_CONCURRENCY requests at once, 2 by default).
threads = env_int("WEB_THREADS", 32, minimum=2)
# A request waiting for its turn holds a thread: the workers' settings bound how many wait
# by their threads (API_WAITING_MAX, controlplane/settings.py), so that a thread of every
# worker stays free for the nodes' heartbeats, which take no turn.
raw_env = [f"WEB_THREADS={threads}"]
timeout = env_int("WEB_TIMEOUT", LONGEST_BLOCKING_REQUEST_S + 30, minimum=LONGEST_BLOCKING_REQUEST_S + 1)
graceful_timeout = env_int("WEB_GRACEFUL_TIMEOUT", 30, minimum=1)
keepalive = 5  # nodes reuse their connection between heartbeats
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1")  # the TLS proxy in front, if any
accesslog = "-" if env_bool("WEB_ACCESS_LOG", True) else None
errorlog = "-"
loglevel = env_str("WEB_LOG_LEVEL", "info")
proc_name = "tec-controlplane"
# gunicorn's control socket lives at one path per user ($HOME/.gunicorn/gunicorn.ctl): two
# control planes on one host (make run beside a test) would fight over it. Off unless asked.
control_socket_disable = not env_bool("WEB_CONTROL_SOCKET", False)


class Logger(glogging.Logger):
    """The access log without the nodes' successful heartbeats (several a second) and the
    probes; a refused heartbeat or a failing probe is still logged."""

    QUIET = ("/heartbeat/", "/healthz", "/readyz", "/metrics")

    def access(self, resp, req, environ, request_time) -> None:
        path = environ.get("PATH_INFO", "")
        if getattr(resp, "status_code", 500) < 400 and any(part in path for part in self.QUIET):
            return
        super().access(resp, req, environ, request_time)


logger_class = Logger
