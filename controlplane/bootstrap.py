"""Pre-flight for `make run` / `make test`: check PostgreSQL and Redis, create the database.

Run as `python -m controlplane.bootstrap`. Prints exactly what is missing and how to
start it, and exits non-zero, instead of letting Django fail with a traceback later.
"""

from __future__ import annotations

import argparse
import sys

import psycopg
import redis
from psycopg import sql

from base.env import env_str
from wire.connection import RedisConfigError, RedisTarget

PG_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_HINT = (
    'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'
)
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/tec_controlplane"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def check_postgres(database_url: str, create: bool) -> str | None:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    dbname = info.get("dbname", "postgres")
    admin = psycopg.conninfo.make_conninfo(database_url, dbname="postgres", connect_timeout=3)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists and create:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                print(f"created database {dbname}")
    except psycopg.OperationalError as error:
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        return (
            f"PostgreSQL does not answer at {where} ({first_line}).\n"
            f"  Start it with:  {PG_HINT}\n"
            "  or point DATABASE_URL at a running server."
        )
    return None


def check_redis(redis_url: str) -> str | None:
    try:
        target = RedisTarget.from_env(redis_url)
    except RedisConfigError as error:
        return str(error)
    try:
        target.client(socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        return (
            f"Redis does not answer at {target.describe()} ({error}).\n"
            f"  Start it with:  {REDIS_HINT}\n"
            "  or point REDIS_URL (or REDIS_SENTINELS) at a running server."
        )
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controlplane.bootstrap",
        description="Check that PostgreSQL and Redis answer, and create the control-plane database.",
    )
    parser.add_argument(
        "--no-create", action="store_true", help="only check; do not create the database"
    )
    args = parser.parse_args(argv)
    database_url = env_str("DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = env_str("REDIS_URL", DEFAULT_REDIS_URL)
    problems = [
        problem
        for problem in (check_postgres(database_url, not args.no_create), check_redis(redis_url))
        if problem
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
