"""`manage.py drill`: a fault drill on real processes, and the history checker that judges it.

The parts, each in its own module:

- `children`  every process the drill starts, in its own process group, always stopped
- `servers`   the drill's own PostgreSQL (control plane + every archive) and Redis
- `cluster`   control plane, supervisor and node workers on them; a runner that restarts exits
- `api`       the operators' REST API, as the drill uses it
- `proxy`     a TCP fault proxy (cut, reset, delay) between one node and Redis or the control plane
- `load`      client threads over Redis with idempotency keys, retrying with the same keys
- `faults`    the seeded schedule and the injectors (kill, pause, restarts, poison, clock, cut, ...)
- `history`   the JSON-lines record of all of it
- `checker`   reads the history and every archive: lost, applied twice, prefixes, digests, recovery
- `report`    the table on screen and the JSON report
- `run`       the drill from start to end
"""
