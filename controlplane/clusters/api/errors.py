"""API error shape: service errors become 409/412 with a code and a readable message."""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane.clusters import services

STATUS_FOR = {
    services.StaleExpectation: status.HTTP_412_PRECONDITION_FAILED,
}


def exception_handler(exc, context):
    if isinstance(exc, services.ServiceError):
        code = STATUS_FOR.get(type(exc), status.HTTP_409_CONFLICT)
        return Response({"detail": str(exc), "code": exc.code}, status=code)
    return drf_exception_handler(exc, context)
