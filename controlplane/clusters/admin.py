"""Operators' web UI: clusters with their nodes, nodes, and the role-change audit."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from controlplane.clusters import services, switchover
from controlplane.clusters.models import (
    NODE_REPORTED_FIELDS,
    Cluster,
    Node,
    NodeRole,
    NodeStatus,
    RoleChange,
)


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
        "applied_position",
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
            status="removed"
        )
        self.fields["expected_term"].initial = cluster.term


class ClusterForm(forms.ModelForm):
    class Meta:
        model = Cluster
        fields = ["name", "replica_count", "heartbeat_interval", "failover_timeout", "lease"]

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and "replica_count" in cleaned:
            refusal = switchover.replica_count_refusal(self.instance, cleaned["replica_count"])
            if refusal:
                self.add_error("replica_count", refusal)
        return cleaned


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "term", "leader", "replica_count", "node_count", "dashboard_link"]
    readonly_fields = ["term", "leader", "status", "created_at"]
    fields = [
        "name",
        "replica_count",
        "heartbeat_interval",
        "failover_timeout",
        "lease",
        "term",
        "leader",
        "status",
        "created_at",
    ]
    inlines = [NodeInline]
    form = ClusterForm
    actions = ["make_follower_leader"]

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
        context = {
            **self.admin_site.each_context(request),
            "title": f"Make a follower of {cluster} the leader",
            "cluster": cluster,
            "candidates": switchover.candidates(cluster),
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/clusters/assign_leader.html", context)


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    actions = ["take_snapshot", "remove_follower"]
    list_display = [
        "name",
        "cluster",
        "role",
        "status",
        "archived_position",
        "applied_position",
        "last_heartbeat",
        "software_version",
    ]
    list_filter = ["cluster", "role", "status"]
    search_fields = ["name"]
    readonly_fields = NODE_REPORTED_FIELDS

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("clusters.operate_cluster")

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("clusters.operate_cluster")

    @admin.action(description="Take a snapshot now", permissions=["change"])
    def take_snapshot(self, request, queryset):
        from controlplane.celery import app

        for node in queryset:
            app.send_task("nodes.take_snapshot", queue=f"node.{node.name}", ignore_result=True)
        self.message_user(
            request,
            f"Asked {', '.join(n.name for n in queryset)} to take a snapshot; it is stored in "
            "each node's archive between two batches.",
            messages.SUCCESS,
        )

    @admin.action(description="Remove from its cluster (followers only)", permissions=["change"])
    def remove_follower(self, request, queryset):
        leaders = [n.name for n in queryset if n.role == NodeRole.LEADER]
        if leaders:
            self.message_user(
                request,
                f"Not done: {', '.join(leaders)} is a leader; switch over first.",
                messages.ERROR,
            )
            return
        count = queryset.update(status=NodeStatus.REMOVED)
        self.message_user(
            request,
            f"Removed {count} node(s): their heartbeats are refused from now on, so they stop.",
            messages.SUCCESS,
        )


@admin.register(RoleChange)
class RoleChangeAdmin(admin.ModelAdmin):
    list_display = ["created_at", "cluster", "term", "old_leader", "new_leader", "actor", "reason"]
    list_filter = ["cluster", "actor"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
