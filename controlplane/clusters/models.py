"""Control-plane tables: clusters, their nodes, and the audit of every role change."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

NAME_VALIDATOR = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,62}$",
    "Use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit.",
)


class ClusterStatus(models.TextChoices):
    FORMING = "forming", "Forming (no leader yet)"
    ACTIVE = "active", "Active"
    DEGRADED = "degraded", "Degraded (fewer live followers than the replica count)"
    LEADERLESS = "leaderless", "Leaderless (electing)"
    NO_SAFE_ELECTION = "no_safe_election", "No safe election (waiting for reports)"


class NodeRole(models.TextChoices):
    LEADER = "leader", "Leader"
    FOLLOWER = "follower", "Follower"


class NodeStatus(models.TextChoices):
    REGISTERED = "registered", "Registered (never started)"
    STARTING = "starting", "Starting (replaying its archive)"
    LIVE = "live", "Live"
    OFFLINE = "offline", "Offline (heartbeat too old)"
    DRAINING = "draining", "Draining"
    REMOVED = "removed", "Removed"


def default_heartbeat_interval() -> float:
    return settings.CLUSTER_HEARTBEAT_INTERVAL


def default_failover_timeout() -> float:
    return settings.CLUSTER_FAILOVER_TIMEOUT


def default_keep_events() -> int:
    return settings.ARCHIVE_KEEP_EVENTS


def default_lease() -> float:
    # Half the failover timeout: an isolated leader stops well before another is elected.
    return settings.CLUSTER_FAILOVER_TIMEOUT / 2


class Cluster(models.Model):
    """One replication group: one leader, its followers, one event log."""

    name = models.CharField(max_length=63, unique=True, validators=[NAME_VALIDATOR])
    replica_count = models.PositiveSmallIntegerField(
        default=2,
        help_text="Replicas (N): how many followers hold a copy of the log.",
    )
    write_quorum = models.PositiveSmallIntegerField(
        default=1,
        help_text=(
            "Write quorum (W): how many followers must have archived an event before it is "
            "committed, 0 to N; the majority W = ceil(N/2) is the default. With 0 the leader "
            "commits alone: acknowledged events can be lost on failover (like Kafka's acks=1)."
        ),
    )
    term_write_quorum = models.PositiveSmallIntegerField(
        default=1,
        help_text=(
            "The lowest write quorum in force since the election window began (the last "
            "leader's first commit of its own term): an election must overlap every commit "
            "not yet re-committed under the current configuration, including those made "
            "with a lower W."
        ),
    )
    report_epoch = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text="Bumped when a node's reset is seen; heartbeat answers carry it and reports echo it.",
    )
    settled_term = models.PositiveBigIntegerField(
        default=0,
        help_text="The last term whose leader committed a position of its own: the election window starts there.",
    )
    term = models.PositiveBigIntegerField(
        default=0, help_text="Leader epoch; bumped on every leadership change."
    )
    leader = models.ForeignKey(
        "Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_leader = models.ForeignKey(
        "Node",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The leader of the last term that had one (its report alone can settle an election).",
    )
    status_message = models.CharField(
        max_length=500,
        blank=True,
        help_text="What the supervisor did last, or why the cluster has no leader.",
    )
    heartbeat_interval = models.FloatField(
        default=default_heartbeat_interval, validators=[MinValueValidator(0.05)], help_text="Seconds between node heartbeats."
    )
    failover_timeout = models.FloatField(
        default=default_failover_timeout,
        validators=[MinValueValidator(0.2)],
        help_text="Seconds without a leader heartbeat before the supervisor elects another leader.",
    )
    lease = models.FloatField(
        default=default_lease,
        validators=[MinValueValidator(0.1)],
        help_text=(
            "Seconds a leader keeps taking commands without a successful heartbeat. "
            "Must be shorter than the failover timeout, so an isolated leader stops "
            "before another is elected."
        ),
    )
    archive_keep_events = models.PositiveBigIntegerField(
        default=default_keep_events,
        help_text=(
            "Retention's minimum window: the newest events every archive keeps. Below it, each node "
            "deletes events older than its latest verified snapshot that no live member still needs."
        ),
    )
    status = models.CharField(max_length=16, choices=ClusterStatus.choices, default=ClusterStatus.FORMING)
    switchover_target = models.ForeignKey(
        "Node",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Set while a planned switchover is in flight: the leader stops taking commands.",
    )
    switchover_deadline = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(
        default=False,
        help_text=(
            "Maintenance mode (Patroni's pause): the supervisor still watches the nodes and marks "
            "them offline, but never ends a term or elects a leader by itself."
        ),
    )
    paused_reason = models.CharField(max_length=500, blank=True, help_text="Why the cluster was paused.")
    paused_at = models.DateTimeField(null=True, blank=True)
    trading_checks = models.BooleanField(
        default=False,
        help_text=(
            "Trading permissions enforced: a command is taken only from a registered trading "
            "client, for its granted accounts and its own client ids (API and, signed, Redis)."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("operate_cluster", "Can change roles, replica counts and nodes of clusters"),
            ("submit_commands", "Can submit commands (orders, cancels, instruments)"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def tolerance(self) -> str:
        """What the replica count and write quorum survive, in one sentence."""
        from nodes.protocol.quorum import tolerance

        try:
            return tolerance(self.replica_count, self.write_quorum).text
        except ValueError as error:
            return str(error)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        if self.write_quorum > self.replica_count:
            raise ValidationError(
                {"write_quorum": f"The write quorum cannot exceed the replica count ({self.replica_count})."}
            )
        if self.lease >= self.failover_timeout:
            raise ValidationError({"lease": "The lease must be shorter than the failover timeout."})
        if self.failover_timeout < 2 * self.heartbeat_interval:
            raise ValidationError(
                {"failover_timeout": "Must be at least twice the heartbeat interval."}
            )


# What a node reports about itself (heartbeats) and the control plane sets (role):
# read-only in the admin and the API.
NODE_REPORTED_FIELDS = [
    "role",
    "status",
    "status_message",
    "last_heartbeat",
    "archived_position",
    "applied_position",
    "state_hash",
    "state_hash_position",
    "software_version",
    "archive_id",
    "last_term",
    "fence_seen",
    "stalled_for",
    "resyncing",
    "resync_target",
    "archive_first_position",
    "archive_bytes",
    "snapshot_position",
    "created_at",
]


class Node(models.Model):
    """One server process: application + archive, started as a Celery worker."""

    name = models.CharField(max_length=63, unique=True, validators=[NAME_VALIDATOR])
    cluster = models.ForeignKey(Cluster, on_delete=models.PROTECT, related_name="nodes")
    role = models.CharField(max_length=16, choices=NodeRole.choices, default=NodeRole.FOLLOWER)
    status = models.CharField(max_length=16, choices=NodeStatus.choices, default=NodeStatus.REGISTERED)
    status_message = models.CharField(
        max_length=500, blank=True, help_text="The node's own one-sentence account of what it is doing."
    )
    archive_location = models.CharField(
        max_length=500, help_text="PostgreSQL URL of this node's own archive database."
    )
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    archived_position = models.PositiveBigIntegerField(default=0)
    applied_position = models.PositiveBigIntegerField(default=0)
    state_hash = models.CharField(max_length=128, blank=True)
    state_hash_position = models.PositiveBigIntegerField(default=0)
    software_version = models.CharField(max_length=64, blank=True)
    credentials_hash = models.CharField(max_length=256, blank=True, editable=False)
    # A rotated secret not yet used: both verify until the node first beats with the new one.
    next_credentials_hash = models.CharField(max_length=256, blank=True, editable=False)
    archive_id = models.CharField(
        max_length=64, blank=True, help_text="Made when the node's archive was created; a new one means a new empty replica."
    )
    last_term = models.PositiveBigIntegerField(default=0, help_text="Term of the node's last archived event.")
    fence_seen = models.PositiveBigIntegerField(
        default=0, help_text="The fence the node read before measuring its log (election freshness)."
    )
    stalled_for = models.FloatField(
        default=0.0,
        help_text="Seconds since the node's loop last finished a cycle, as it reported: liveness is progress.",
    )
    resyncing = models.BooleanField(
        default=False,
        help_text="A new empty replica (archive reset or position went back): neither votes nor leads until resynced.",
    )
    resync_target = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The position a resyncing node must reach to vote and lead again."
    )
    resync_epoch = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="The cluster's report epoch when this node's reset was seen."
    )
    truncations = models.PositiveBigIntegerField(
        default=0, help_text="Rejoin truncations its archive has made (a position that went back with more is a rejoin)."
    )
    archive_first_position = models.PositiveBigIntegerField(
        default=0, help_text="The oldest position the node's archive holds (retention moves it up)."
    )
    archive_bytes = models.PositiveBigIntegerField(default=0, help_text="The node's archive on disk: events and snapshots.")
    snapshot_position = models.PositiveBigIntegerField(
        default=0, help_text="Position of the node's latest verified snapshot (0: none)."
    )
    report_boot = models.CharField(max_length=32, blank=True, editable=False)
    report_seq = models.PositiveBigIntegerField(default=0, editable=False)
    removed_in_term = models.PositiveBigIntegerField(
        null=True, blank=True, editable=False,
        help_text="The term in which the node was removed: it still counts in that term's election quorum.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster"],
                condition=models.Q(role="leader"),
                name="one_leader_per_cluster",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RoleChange(models.Model):
    """Audit row: one per term change of a cluster."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="role_changes")
    term = models.PositiveBigIntegerField()
    old_leader = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    new_leader = models.ForeignKey(
        Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500)
    actor = models.CharField(max_length=150, help_text="User name, or 'supervisor'.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-term"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "term"], name="one_role_change_per_term"),
        ]

    def __str__(self) -> str:
        return f"{self.cluster} term {self.term}: {self.old_leader or '-'} -> {self.new_leader or '-'}"


class OperatorActionKind(models.TextChoices):
    PAUSE = "pause", "Paused (maintenance mode)"
    RESUME = "resume", "Resumed (automatic failover on)"
    WRITE_QUORUM = "write_quorum", "Write quorum changed"
    REPLICA_COUNT = "replica_count", "Replica count changed"
    REGISTER_NODE = "register_node", "Node registered"
    REMOVE_NODE = "remove_node", "Node removed"
    SNAPSHOT = "snapshot", "Snapshot requested"
    ROTATE_SECRET = "rotate_secret", "Node secret rotated"
    ROTATE_REPLICATION_KEY = "rotate_replication_key", "Replication key rotated"


class OperatorAction(models.Model):
    """Audit row: every operator action that is not a term change (those are RoleChanges)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="operator_actions")
    node = models.ForeignKey(Node, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=32, choices=OperatorActionKind.choices)
    term = models.PositiveBigIntegerField(help_text="The cluster's term when it was done.")
    detail = models.CharField(max_length=500, blank=True, help_text="What changed, e.g. 'write quorum 2 -> 1'.")
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=150, help_text="User name, or the command that did it.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.cluster} term {self.term}: {self.get_action_display()} by {self.actor}"


ACCOUNT_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$",
    "Use 1-128 letters, digits, '.', '_', '@' or '-', starting with a letter or digit.",
)


class TradingAccount(models.Model):
    """An account orders are placed for; a trading client may use it once granted."""

    name = models.CharField(max_length=128, unique=True, validators=[ACCOUNT_VALIDATOR])
    description = models.CharField(max_length=400, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TradingClient(models.Model):
    """Who may trade: a user (API submissions) or a service credential (signed batches over
    Redis, with its ClientKeys). Its client ids are its name or start with `name.`."""

    name = models.CharField(max_length=63, unique=True, validators=[NAME_VALIDATOR])
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="trading_client", help_text="The user whose API submissions are this client's.",
    )  # fmt: skip
    accounts = models.ManyToManyField(TradingAccount, blank=True, related_name="clients")
    may_manage_instruments = models.BooleanField(
        default=False, help_text="May add instruments and change their status (no account)."
    )
    active = models.BooleanField(default=True, help_text="An inactive client's commands are refused.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ClientKey(models.Model):
    """An HMAC-SHA256 key of a trading client, named by key_id in every signed batch.

    Rotation: add a key, move the client to it, then revoke the old one; both verify in
    between. The secret is kept (the leader needs it to verify) and reaches the leader only
    in its heartbeat answer."""

    client = models.ForeignKey(TradingClient, on_delete=models.CASCADE, related_name="keys")
    key_id = models.CharField(max_length=32, unique=True, validators=[NAME_VALIDATOR])
    secret = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["client__name", "created_at"]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.client})"


class ClientNonce(models.Model):
    """The highest batch nonce a leader of the cluster acknowledged with a client key
    (wire.nonces): the next leader refuses every batch of that key not above it, so a
    batch captured in one term cannot be replayed in another. Only ever raised
    (trading.raise_nonce_marks); not a foreign key, since the control plane's own key
    has no row and a deleted key's mark does no harm."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="client_nonces")
    key_id = models.CharField(max_length=63)
    nonce = models.BigIntegerField()

    class Meta:
        ordering = ["cluster__name", "key_id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "key_id"], name="client_nonce_per_cluster_key")]

    def __str__(self) -> str:
        return f"{self.key_id} in {self.cluster}: {self.nonce}"


class ReplicationKey(models.Model):
    """An HMAC-SHA256 key the nodes of a cluster sign their acks and live-stream entries
    with (wire.signing), so that a process that can write to Redis cannot fake a commit or
    an event. Every node gets the cluster's live keys in its heartbeat answer; see
    controlplane.clusters.replication for which one signs and how rotation goes."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="replication_keys")
    key_id = models.CharField(max_length=32, unique=True)
    secret = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(help_text="The database's clock (services.db_now).")
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["cluster__name", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.cluster})"
