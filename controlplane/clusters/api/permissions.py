"""Who may do what in the API: any signed-in user reads; operators change things."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import UserRateThrottle

OPERATE_PERMISSION = "clusters.operate_cluster"
SUBMIT_PERMISSION = "clusters.submit_commands"
OPERATORS_GROUP = "operators"


class IsViewerOrOperator(BasePermission):
    message = "Changing clusters, roles or nodes needs the operator permission (group 'operators')."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        return user.has_perm(OPERATE_PERMISSION)


class CanSubmitCommands(BasePermission):
    message = "Submitting commands needs the permission clusters.submit_commands (group 'operators' or 'traders')."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(SUBMIT_PERMISSION))


class WriteRateThrottle(UserRateThrottle):
    """The rate of state-changing requests (POST, PATCH, ...) per user: scope `write`."""

    scope = "write"

    def allow_request(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)
