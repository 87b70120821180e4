"""Deterministic simulation of the replication protocol (DESIGN §4 "Proof, not hope").

The whole cluster runs in one process on a simulated clock: N + 1 nodes, one or two
supervisors, a switchover service, two clients, the control plane's database and Redis.
Faults are drawn from the seed; `random.Random(seed)` is the only source of randomness,
so a seed replays exactly (`python -m tests.simulation --seed S --trace`). The nodes and
the control plane decide with the same pure modules the real ones use (nodes.protocol:
quorum, commit, election, fencing, lease, identity, rejoin). `Rules` restores one old,
unsafe behaviour at a time, to show that the simulator finds the loss each rule prevents.

Modules: simulator (scheduler, network, run and heal), node (archive, heartbeats, leader
and follower roles), controlplane (database, heartbeat endpoint, supervisor, switchover),
redis_model, clients, faults, invariants, rules, runner and __main__ (command line).

Invariants (invariants.py), checked after every step on what the step changed, and
from scratch after every step with --paranoid:

- committed_results_survive -- the promise itself: a result reported committed is, at the
  same position with the same payload, in the log of every leader of its own or a later
  term (checked when a leader starts, and at every delivery against leaders of later
  terms already running), never answered differently, and in the final log.
  Rules: Election restriction, Election quorum, Fencing (delivery), Archive identity.
- one_leader_per_term -- no term is assigned, or led, by two nodes. Rule: One leader per
  term (compare-and-set on the term).
- logs_are_prefixes_up_to_commit -- an acknowledgement the ack script lets through claims
  exactly the leader's log up to its position (so commits count only true copies); a
  follower past its rejoin holds a prefix of its leader's log; a (position, term) holds
  one entry in every log. Rules: Commit rule, Rejoin, Fencing (acks), Catch-up.
- terms_never_decrease -- along every log, and no log holds a term the database has not
  reached. Rule: Fencing (every event carries its leader's term).
- commands_execute_once -- no log executes a (client id, seq) twice; a duplicate event
  points at the position that executed it. Rule: Idempotent commands.
- convergence (liveness, reported apart) -- once every fault is healed, a leader exists,
  every client has its answer and every member holds the leader's log. Rules: Liveness is
  progress, and "the cluster waits and says why" must end when the cause is gone.
- determinism (test_determinism.py) -- one seed, one trace digest. Rule: Proof, not hope.

Faults (faults.py, one kind each, all drawn from the seed):

- crash, crash_leader: restart from the durable archive, replay before "live" (Rejoin,
  Election restriction, Election quorum, Lease).
- pause, pause_leader: SIGSTOP; the process resumes with stale beliefs -- the deposed
  leader paths (Fencing, Lease).
- partition, partition_leader: cut off from the control plane only; a leader keeps its
  role until the fence stops it (Fencing, Lease).
- archive_loss: a node restarts with an empty archive and a new id, at most one open
  at a time and never more than W (Archive identity, Commit rule).
- redis_loss: fence, streams, acks, pending commands and reply lists gone (Missing fence,
  Catch-up, Idempotent commands).
- clock_step: a node's own timers jump; judgements use the database's clock (Lease,
  Liveness).
- slow: a node's reports and acks arrive late (Election quorum: reports built before the
  fence moved).
- network: a storm of lost, duplicated and reordered messages (every rule).
- supervisor_crash, and a supervisor dying between the database commit and raising the
  fence (Fencing: database first, the next cycle restores the fence). Two supervisors
  race on compare-and-set (One leader per term).
- cp_outage: the control plane's PostgreSQL restarts; no heartbeat answered, no
  transaction goes through for a while, nothing committed is lost (Lease).
- switchover (also two at once, and with a failover): One leader per term, no loss.
- write_quorum, remove, add: Replicas and quorum, Election quorum (lowest W, removed
  followers still counted), Commit rule (acks of removed nodes), Catch-up.

Where the simulation found the brief's protocol wanting, the default `Rules` model the
control plane's fix, and flags restore the behaviour as specified and this simulator's
first fix, each with a test in test_legacy_rules.py: quorum_window="term" loses committed
results ("settle" is the default, "commit" the first fix; controlplane.py, "Election
window"); report_order="arrival" and truncation="resync" stall the cluster for good
("boot" and "count" are the defaults, "start" and "report" the first fixes; rules.py).
Two flaws of the defaults are shown by failing tests: a late report of a node's previous
boot is stored as a reset (test_safe_rules.py), and a settle report racing a change of W
(test_settle_race.py, a directed schedule; settle_report="held" is a proposed fix). Other
interpretations are documented where they are made: a switchover pause echoed in the
leader's reports (controlplane.py), catch-up served only by the leader of the follower's
own term, and a follower that catches up from the leader's archive when the stream shows
nothing but the leader holds more (node.py).
Stream reads are atomic Redis calls made in the follower's cycle; their delay is the
cycle's.
"""
