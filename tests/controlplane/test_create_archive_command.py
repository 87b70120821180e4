"""`manage.py create_archive` creates a node's archive once and says so."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.core.management import CommandError, call_command
from psycopg import sql

from controlplane.clusters import services


def test_create_archive_is_idempotent_and_names_unknown_nodes(cluster, capsys):
    dbname = f"tec_test_cmd_{uuid.uuid4().hex[:8]}"
    services.register_node(
        name="alpha-9", cluster=cluster, archive_location=f"postgresql://postgres@127.0.0.1:5432/{dbname}"
    )
    try:
        call_command("create_archive", "alpha-9")
        call_command("create_archive", "alpha-9")
        out = capsys.readouterr().out
        assert f"alpha-9: archive postgresql://postgres@127.0.0.1:5432/{dbname} created" in out
        assert out.count("already there") == 1
        with pytest.raises(CommandError, match="no registered node named ghost"):
            call_command("create_archive", "ghost")
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
