"""OpenAPI post-processing: the errors every operation can answer, documented once."""

from __future__ import annotations

from controlplane import admission

ERROR_SCHEMA = {
    "type": "object",
    "description": "An error: `detail` (and `code`) for most, a message list per field for invalid input.",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": True,
}
# Answered by the parser, the middleware, authentication, permissions, throttling and the
# router before (or instead of) the view's own answers.
COMMON_ERRORS = {
    "400": "Malformed request (JSON that is too deep, numbers past 64 bits, NUL, invalid Unicode) or invalid fields.",
    "401": "No or invalid credentials.",
    "403": "Not permitted.",
    "404": "No such object.",
    "405": "Method not allowed.",
    "413": "The body is too large.",
    "415": "The body is not JSON.",
    "429": "Too many requests: throttled; retry after the `Retry-After` header's seconds.",
}
# Every operation that takes a turn (controlplane/admission.py), all but the heartbeat.
BUSY = {
    "503": "The control plane is busy (`code`: `busy`): no turn for this request within "
    "API_QUEUE_TIMEOUT, or API_WAITING_MAX requests already waiting; retry after the "
    "`Retry-After` header's seconds."
}


def document_common_errors(result, generator, request, public):
    """drf-spectacular POSTPROCESSING_HOOK: add COMMON_ERRORS to every operation; a 400 the
    view documents becomes "its shape or the common error shape" (the parser answers first)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        errors = COMMON_ERRORS if admission.TAKES_NO_TURN.match(path) else {**COMMON_ERRORS, **BUSY}
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in errors.items():
                if code not in responses:
                    responses[code] = {
                        "description": description,
                        "content": {"application/json": {"schema": reference}},
                    }
                elif code == "400":
                    for media in responses[code].get("content", {}).values():
                        media["schema"] = {"anyOf": [media["schema"], reference]}
                elif code in BUSY:  # the view's own 503 (no leader answered), or busy
                    own = responses[code].get("description") or "The cluster cannot answer now (see above)."
                    responses[code]["description"] = f"{own} Or: {description}"
    return result
