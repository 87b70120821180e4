"""Operators' web UI: clusters with their nodes, nodes, and the role-change audit."""

from __future__ import annotations

import copy

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from controlplane.clusters import dashboard, maintenance, replication, services, switchover, trading
from controlplane.clusters.models import (
    NODE_REPORTED_FIELDS,
    ClientKey,
    ClientNonce,
    Cluster,
    Node,
    NodeRole,
    NodeStatus,
    OperatorAction,
    RoleChange,
    TradingAccount,
    TradingClient,
)
from nodes.protocol.quorum import default_write_quorum


class NodeInline(admin.TabularInline):
    model = Node
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "name",
        "role",
        "status",
        "archived_position",
        "last_term",
        "applied_position",
        "resyncing",
        "last_heartbeat",
        "status_message",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AssignLeaderForm(forms.Form):
    node = forms.ModelChoiceField(queryset=Node.objects.none(), label="New leader")
    reason = forms.CharField(max_length=400, initial="switchover requested by an operator")
    expected_term = forms.IntegerField(widget=forms.HiddenInput)

    def __init__(self, *args, cluster: Cluster, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].queryset = cluster.nodes.filter(role=NodeRole.FOLLOWER).exclude(
            status=NodeStatus.REMOVED
        )
        self.fields["expected_term"].initial = cluster.term


class ForceLeaderForm(forms.Form):
    node = forms.ChoiceField(label="Force this node to lead")
    reason = forms.CharField(max_length=400, help_text="Recorded in the audit with what may be lost.")
    confirm = forms.BooleanField(
        label="I accept that results already reported as committed may be lost",
        help_text="The election's safety rules are skipped for this node.",
    )

    def __init__(self, *args, options: list[dashboard.ForceOption], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["node"].choices = [
            (o.node, f"{o.node}: may lose {o.at_risk}" if o.at_risk else f"{o.node}: no node reported more")
            for o in options
            if not o.refusal
        ]


class ClusterForm(forms.ModelForm):
    write_quorum = forms.IntegerField(
        min_value=0,
        max_value=32767,
        required=False,
        label="Write quorum",
        help_text=(
            "Write quorum (W): follower acks a commit needs, 0 to the replica count. Empty on "
            "a new cluster: the majority ceil(N/2). Raising it above the live followers is refused."
        ),
    )

    class Meta:
        model = Cluster
        fields = [
            "name", "replica_count", "write_quorum", "heartbeat_interval", "failover_timeout", "lease",
            "archive_keep_events",
            "trading_checks",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            self.initial["write_quorum"] = None  # empty: the majority of the replica count

    def clean(self):
        """N and W judged together (one form may lower or raise both), by the services' rules."""
        cleaned = super().clean()
        replicas, quorum = cleaned.get("replica_count"), cleaned.get("write_quorum")
        if replicas is None or "write_quorum" not in cleaned:
            return cleaned
        if quorum is None:
            if self.instance.pk:
                self.add_error("write_quorum", "Give the write quorum, 0 to the replica count.")
                return cleaned
            quorum = cleaned["write_quorum"] = default_write_quorum(replicas)
        if not self.instance.pk:
            if quorum > replicas:
                self.add_error(
                    "write_quorum", f"The write quorum must be between 0 and the replica count ({replicas})."
                )
            return cleaned
        current = copy.copy(self.instance)
        if replicas != self.instance.replica_count:
            current.write_quorum = quorum
            refusal = switchover.replica_count_refusal(current, replicas)
            if refusal:
                self.add_error("replica_count", refusal)
                return cleaned
        if quorum != self.instance.write_quorum:
            current = copy.copy(self.instance)
            current.replica_count = replicas
            refusal = services.write_quorum_refusal(current, quorum)
            if refusal:
                self.add_error("write_quorum", refusal)
        return cleaned


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "term",
        "leader",
        "replica_count",
        "write_quorum",
        "tolerance",
        "situation",
        "paused",
        "node_count",
        "dashboard_link",
    ]
    readonly_fields = [
        "tolerance", "situation", "term", "leader", "last_leader", "status", "paused", "paused_reason",
        "paused_at", "created_at",
    ]  # fmt: skip
    fields = [
        "name",
        "replica_count",
        "write_quorum",
        "tolerance",
        "heartbeat_interval",
        "failover_timeout",
        "lease",
        "archive_keep_events",
        "trading_checks",
        "term",
        "leader",
        "last_leader",
        "status",
        "situation",
        "paused",
        "paused_reason",
        "paused_at",
        "created_at",
    ]
    inlines = [NodeInline]
    form = ClusterForm
    actions = ["make_follower_leader", "force_leader", "pause", "resume", "rotate_replication_key"]

    @admin.display(description="what it tolerates")
    def tolerance(self, obj: Cluster) -> str:
        return obj.tolerance

    @admin.display(description="status message")
    def situation(self, obj: Cluster) -> str:
        """The supervisor's last word; without a leader it says why, and stands out."""
        why = dashboard.why_no_leader(obj)
        if obj.paused:
            paused = format_html(
                '<strong style="color: var(--message-warning-fg, #8a6d3b)">PAUSED: no automatic '
                "failover{}</strong>",
                f" ({obj.paused_reason})" if obj.paused_reason else "",
            )
            if why is None:
                return format_html("{}<br>{}", paused, obj.status_message or "")
            return format_html("{}<br>Why no leader: {}", paused, why)
        if why is None:
            return obj.status_message or "-"
        return format_html(
            '<strong style="color: var(--error-fg)">Why no leader: {}</strong>', why
        )

    def save_model(self, request, obj: Cluster, form, change: bool) -> None:
        """A new cluster is created as given (W = its majority unless set). A change saves
        only the fields the form changed, so a term or leader the supervisor set meanwhile
        is never written back, and W goes through services.set_write_quorum: lowered
        before N is lowered, raised after N is raised, so W <= N at every step."""
        if not change:
            obj.term_write_quorum = obj.write_quorum
            super().save_model(request, obj, form, change)
            return
        quorum = obj.write_quorum
        saved = Cluster.objects.get(pk=obj.pk)
        current, replicas_before = saved.write_quorum, saved.replica_count
        others = [name for name in form.changed_data if name not in ("write_quorum", "name")]
        actor = services.Actor.of_user(request.user)
        try:
            with transaction.atomic():
                if quorum < current:
                    maintenance.set_write_quorum(obj.name, quorum, actor=actor)
                if others:
                    obj.save(update_fields=others)
                    maintenance.record_replica_count(obj, replicas_before, actor=actor)
                if quorum > current:
                    maintenance.set_write_quorum(obj.name, quorum, actor=actor)
        except services.ServiceError as error:  # the cluster changed since the form was checked
            self.message_user(request, f"Not saved: {error}", messages.ERROR)

    def get_readonly_fields(self, request, obj=None):
        # A cluster's name keys its Redis streams and its nodes' queues: fixed once created.
        return [*self.readonly_fields, "name"] if obj is not None else self.readonly_fields

    @admin.action(description="Pause automatic failover (maintenance mode)", permissions=["change"])
    def pause(self, request, queryset):
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume automatic failover", permissions=["change"])
    def resume(self, request, queryset):
        self._set_paused(request, queryset, False)

    @admin.action(description="Rotate the replication key (no downtime)", permissions=["change"])
    def rotate_replication_key(self, request, queryset):
        actor = services.Actor.of_user(request.user)
        for cluster in queryset.order_by("name"):
            key = replication.rotate(cluster.name, actor=actor)
            self.message_user(
                request,
                f"{cluster.name}: new replication key {key.key_id}; it signs once every node has had it "
                f"for a failover timeout ({cluster.failover_timeout:g} s)",
                messages.SUCCESS,
            )

    def _set_paused(self, request, queryset, paused: bool) -> None:
        actor = services.Actor.of_user(request.user)
        verb = "paused" if paused else "resumed"
        reason = f"{verb} from the admin by {actor.name}"
        names = []
        for cluster in queryset.order_by("name"):
            maintenance.set_paused(cluster.name, paused, actor=actor, reason=reason)
            names.append(cluster.name)
        what = (
            "the supervisor keeps watching but will not fail over until resumed"
            if paused
            else "automatic failover is on again"
        )
        self.message_user(request, f"Cluster {', '.join(names)} {verb}: {what}.", messages.SUCCESS)

    @admin.display(description="nodes")
    def node_count(self, obj: Cluster) -> int:
        return obj.nodes.count()

    @admin.display(description="dashboard")
    def dashboard_link(self, obj: Cluster) -> str:
        return format_html(
            '<a href="{}">Dashboard</a>', reverse("cluster-dashboard", args=[obj.name])
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("clusters.operate_cluster")

    @admin.action(description="Switchover: make a chosen follower the leader", permissions=["change"])
    def make_follower_leader(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one cluster.", messages.ERROR)
            return None
        cluster = queryset.get()
        form = AssignLeaderForm(request.POST if "apply" in request.POST else None, cluster=cluster)
        if "apply" in request.POST and form.is_valid():
            try:
                change = switchover.change_leader(
                    cluster.name,
                    form.cleaned_data["node"].name,
                    actor=services.Actor.of_user(request.user),
                    reason=form.cleaned_data["reason"],
                    expected_term=form.cleaned_data["expected_term"],
                )
            except services.ServiceError as error:
                self.message_user(request, f"Not done: {error}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Done: {change.new_leader} is now the leader of {cluster} (term {change.term}).",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(request.get_full_path())
        return self._action_page(
            request, queryset, "admin/clusters/assign_leader.html",
            title=f"Make a follower of {cluster} the leader", cluster=cluster,
            candidates=switchover.candidates(cluster), form=form,
        )  # fmt: skip

    @admin.action(description="Force a leader (unsafe, audited)", permissions=["change"])
    def force_leader(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one cluster.", messages.ERROR)
            return None
        cluster = queryset.select_related("leader").get()
        situation, options = dashboard.election_outlook(cluster)
        applying = "apply" in request.POST
        targets = [option for option in options if option.node != getattr(cluster.leader, "name", None)]
        form = ForceLeaderForm(request.POST if applying else None, options=targets)
        if applying and form.is_valid():
            try:
                change = services.force_leader(
                    cluster.name,
                    form.cleaned_data["node"],
                    actor=services.Actor.of_user(request.user),
                    reason=form.cleaned_data["reason"],
                )
            except services.ServiceError as error:
                self.message_user(request, f"Not done: {error}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"Forced: {change.new_leader} leads {cluster} in term {change.term}. "
                    f"Audited as: {change.reason}",
                    messages.WARNING,
                )
            return HttpResponseRedirect(request.get_full_path())
        return self._action_page(
            request, queryset, "admin/clusters/force_leader.html",
            title=f"Force a leader of {cluster} (unsafe)", cluster=cluster,
            situation=situation, options=options, form=form,
        )  # fmt: skip

    def _action_page(self, request, queryset, template: str, **context) -> TemplateResponse:
        """The intermediate page of an admin action that asks before it acts."""
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "queryset": queryset,
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                **context,
            },
        )


class NodeAddForm(forms.ModelForm):
    """Registering a node: its name, its cluster and where its archive lives; the secret is
    made by services.register_node and shown once on the next page."""

    class Meta:
        model = Node
        fields = ["name", "cluster", "archive_location"]

    def clean_archive_location(self) -> str:
        value = self.cleaned_data["archive_location"]
        if not value.startswith(("postgresql://", "postgres://")):
            raise forms.ValidationError("Must be a PostgreSQL URL such as postgresql://user@host:5432/archive_db.")
        return value


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    actions = ["take_snapshot", "remove_follower", "rotate_secret"]
    list_display = [
        "name",
        "cluster",
        "role",
        "status",
        "archived_position",
        "last_term",
        "applied_position",
        "resyncing",
        "last_heartbeat",
        "software_version",
    ]
    list_filter = ["cluster", "role", "status", "resyncing"]
    search_fields = ["name"]
    readonly_fields = NODE_REPORTED_FIELDS
    fields = ["name", "cluster", "archive_location", *NODE_REPORTED_FIELDS]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = NodeAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.fields if obj is not None else NodeAddForm.Meta.fields

    def get_readonly_fields(self, request, obj=None):
        # The API forbids moving a node (its acks and votes belong to one cluster's log),
        # and its name is its queue and its secret's file: both fixed once registered.
        return ["name", "cluster", *NODE_REPORTED_FIELDS] if obj is not None else []

    def save_model(self, request, obj: Node, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        node, secret = maintenance.register_node(
            name=obj.name,
            cluster=obj.cluster,
            archive_location=obj.archive_location,
            actor=services.Actor.of_user(request.user),
        )
        obj.pk, obj.credentials_hash, obj.created_at = node.pk, node.credentials_hash, node.created_at
        request._registered_secret = secret  # shown once by response_add, stored nowhere

    def response_add(self, request, obj: Node, post_url_continue=None):
        secret = getattr(request, "_registered_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Node {obj.name} registered",
            "node": obj,
            "secret": secret,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/clusters/node_registered.html", context)
        response["Cache-Control"] = "no-store"  # the secret must not stay in any cache
        return response

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("clusters.operate_cluster")

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("clusters.operate_cluster")

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a row would neither fence the node nor audit it: use "Remove" instead.
        return False

    @admin.action(description="Rotate the secret (the new one is shown once)", permissions=["change"])
    def rotate_secret(self, request, queryset) -> None:
        for node in queryset:
            secret = maintenance.rotate_node_secret(node.name, actor=services.Actor.of_user(request.user))
            self.message_user(
                request,
                f"new secret of {node.name}: {secret} (shown only now; put it in the node's "
                "NODE_SECRET_FILE: the old one works until the node uses the new one)",
                messages.WARNING,
            )

    @admin.action(description="Take a snapshot now", permissions=["change"])
    def take_snapshot(self, request, queryset):
        self._each_node(
            request, queryset, lambda node, actor: maintenance.request_snapshot(node.name, actor=actor),
            failed="Not asked",
            done="Asked {names} to take a snapshot; it is stored in each node's archive between two batches.",
        )  # fmt: skip

    @admin.action(description="Remove from its cluster (followers only)", permissions=["change"])
    def remove_follower(self, request, queryset):
        self._each_node(
            request, queryset,
            lambda node, actor: maintenance.remove_node(node.name, actor=actor, reason=f"removed from the admin by {actor.name}"),
            failed="Not removed",
            done="Removed {names}: their heartbeats are refused from now on, so they stop, and their acks no longer count.",
        )  # fmt: skip

    def _each_node(self, request, queryset, do, *, failed: str, done: str) -> None:
        """`do(node, actor)` for each selected node, in name order: one error message per
        node it was refused for, one success message naming the others."""
        actor = services.Actor.of_user(request.user)
        succeeded = []
        for node in queryset.order_by("name"):
            try:
                do(node, actor)
            except services.ServiceError as error:
                self.message_user(request, f"{failed}: {error}", messages.ERROR)
            else:
                succeeded.append(node.name)
        if succeeded:
            self.message_user(request, done.format(names=", ".join(succeeded)), messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record only the system writes (audit, marks): listed and read, never added,
    changed or deleted by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "cluster", "term", "action", "node", "actor", "detail", "reason"]
    list_filter = ["cluster", "action", "actor"]


@admin.register(RoleChange)
class RoleChangeAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "cluster", "term", "old_leader", "new_leader", "actor", "reason"]
    list_filter = ["cluster", "actor"]


@admin.register(ClientNonce)
class ClientNonceAdmin(ReadOnlyAdmin):
    """Read-only: a mark is only ever raised, by the leaders' heartbeats (wire.nonces). A key
    whose client set its clock far ahead is replaced (issue a new key, revoke this one)."""

    list_display = ["cluster", "key_id", "nonce"]
    list_filter = ["cluster"]
    search_fields = ["key_id"]


@admin.register(TradingAccount)
class TradingAccountAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "created_at"]
    search_fields = ["name"]


class ClientKeyInline(admin.TabularInline):
    """Keys are added with the action "Issue a signing key" (secret shown once), revoked here."""

    model = ClientKey
    extra = 0
    can_delete = False
    fields = ["key_id", "created_at", "revoked_at"]
    readonly_fields = ["key_id", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TradingClient)
class TradingClientAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "active", "may_manage_instruments", "granted_accounts"]
    search_fields = ["name", "user__username"]
    filter_horizontal = ["accounts"]
    inlines = [ClientKeyInline]
    actions = ["issue_key"]

    @admin.display(description="accounts")
    def granted_accounts(self, client: TradingClient) -> str:
        return ", ".join(client.accounts.values_list("name", flat=True)) or "none"

    @admin.action(description="Issue a signing key (its secret is shown once)")
    def issue_key(self, request, queryset) -> None:
        for client in queryset:
            key = trading.new_key(client)
            self.message_user(
                request,
                f"key for {client.name}: key id {key.key_id}, secret {key.secret} (shown only now)",
                messages.WARNING,
            )
