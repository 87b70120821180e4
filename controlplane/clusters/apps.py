"""Django app config of the clusters app."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate

AUDITORS_GROUP = "auditors"


def ensure_operators_group(sender, **kwargs) -> None:
    """Groups: 'operators' change roles, replica counts and nodes and submit commands; 'traders' submit."""
    from django.contrib.auth.models import Group, Permission

    permissions = {
        p.codename: p
        for p in Permission.objects.filter(
            content_type__app_label="clusters", codename__in=["operate_cluster", "submit_commands"]
        )
    }
    if len(permissions) < 2:  # created by django.contrib.auth's post_migrate, which runs first
        return
    operators, _ = Group.objects.get_or_create(name="operators")
    operators.permissions.add(*permissions.values())
    traders, _ = Group.objects.get_or_create(name="traders")
    traders.permissions.add(permissions["submit_commands"])
    # Auditors read the audit (role changes, operator actions on clusters and nodes) and the
    # objects it names, in the admin and the API; they change nothing and submit nothing.
    auditors, _ = Group.objects.get_or_create(name=AUDITORS_GROUP)
    auditors.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="clusters",
            codename__in=["view_rolechange", "view_operatoraction", "view_cluster", "view_node"],
        )
    )


class ClustersConfig(AppConfig):
    name = "controlplane.clusters"
    label = "clusters"
    verbose_name = "Trading engine clusters"

    def ready(self) -> None:
        # Runs after django.contrib.auth's own handler, which creates the permissions.
        post_migrate.connect(ensure_operators_group, sender=self)
