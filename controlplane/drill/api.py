"""The drill's view of the control plane: the operators' REST API, as an operator uses it.

Reads the cluster, its nodes and the role-change audit, and makes the operator's
changes the drill injects (switchovers, write-quorum changes). Every call has a timeout;
a control plane that does not answer (restarting, its database down) raises
ApiUnavailable, which the callers treat as "ask again later".
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ApiUnavailable(Exception):
    """The control plane did not answer (or answered 5xx)."""


class ControlPlaneApi:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body) for 2xx and 4xx; ApiUnavailable otherwise."""
        request = urllib.request.Request(
            f"{self.base_url}/api/v1/{path.lstrip('/')}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            if error.code >= 500:
                raise ApiUnavailable(f"{method} {path}: {error.code} {text[:200]}") from None
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"detail": text[:300]}
        except (OSError, ValueError) as error:
            raise ApiUnavailable(f"{method} {path}: {error}") from None

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise ApiUnavailable(f"GET {path}: {status} {body}")
        return body

    def cluster(self, name: str) -> dict:
        return self.get(f"clusters/{name}/")

    def nodes(self, cluster: str) -> list[dict]:
        return self._all(f"nodes/?cluster={cluster}")

    def role_changes(self, cluster: str) -> list[dict]:
        return self._all(f"role-changes/?cluster={cluster}")

    def _all(self, path: str) -> list[dict]:
        rows: list[dict] = []
        separator = "&" if "?" in path else "?"
        while True:
            page = self.get(f"{path}{separator}limit=500&offset={len(rows)}")
            if isinstance(page, list):
                return page
            rows.extend(page["results"])
            if not page.get("next"):
                return rows

    def switchover(self, cluster: str, node: str, expected_leader: str, expected_term: int, timeout: float) -> tuple[int, dict]:
        return self.request(
            "POST",
            f"clusters/{cluster}/switchover/",
            {"node": node, "expected_leader": expected_leader, "expected_term": expected_term,
             "timeout": timeout, "reason": "drill: switchover under load"},
            timeout=timeout + 20,
        )  # fmt: skip

    def set_write_quorum(self, cluster: str, write_quorum: int) -> tuple[int, dict]:
        return self.request("PATCH", f"clusters/{cluster}/", {"write_quorum": write_quorum})
