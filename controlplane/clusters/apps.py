"""Django app config of the clusters app."""

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_operators_group(sender, **kwargs) -> None:
    """The 'operators' group carries the permission to change roles, replica counts and nodes."""
    from django.contrib.auth.models import Group, Permission

    try:
        permission = Permission.objects.get(
            codename="operate_cluster", content_type__app_label="clusters"
        )
    except Permission.DoesNotExist:  # permissions are created by an earlier post_migrate
        return
    group, _ = Group.objects.get_or_create(name="operators")
    group.permissions.add(permission)


class ClustersConfig(AppConfig):
    name = "controlplane.clusters"
    label = "clusters"
    verbose_name = "Trading engine clusters"

    def ready(self) -> None:
        # Runs after django.contrib.auth's own handler, which creates the permissions.
        post_migrate.connect(ensure_operators_group, sender=self)
