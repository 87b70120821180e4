"""Typed OpenAPI responses (no bare objects), documented filters, and JSON log lines."""

from __future__ import annotations

import json
import logging

from drf_spectacular.generators import SchemaGenerator

from base.jsonlog import JsonFormatter


def test_every_response_has_a_typed_schema(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    bare = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation.get("responses", {}).items():
                body = response.get("content", {}).get("application/json", {}).get("schema")
                if body is None:
                    continue
                if "$ref" not in body and body.get("type") == "object" and "properties" not in body:
                    bare.append(f"{method.upper()} {path} {code}")
    assert bare == []


def test_the_cluster_filters_are_documented(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for path in ("/api/v1/nodes/", "/api/v1/role-changes/", "/api/v1/operator-actions/"):
        names = [parameter["name"] for parameter in schema["paths"][path]["get"]["parameters"]]
        assert "cluster" in names, path


def test_json_log_lines_carry_cluster_node_and_term(monkeypatch):
    monkeypatch.setenv("NODE_NAME", "alpha-2")
    record = logging.LogRecord("controlplane.supervisor", logging.WARNING, __file__, 1, "%s: ended term %d", ("alpha", 4), None)
    record.cluster, record.term = "alpha", 5
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "alpha: ended term 4"
    assert (line["level"], line["logger"]) == ("WARNING", "controlplane.supervisor")
    assert (line["cluster"], line["node"], line["term"]) == ("alpha", "alpha-2", 5)
    assert line["time"].endswith("+00:00")
