"""`manage.py redis_acl`: the Redis users of the control plane, the nodes and each trading client."""

from __future__ import annotations

import os
from pathlib import Path

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from base.env import env_str
from controlplane import redis_acl
from controlplane.clusters.models import TradingClient


class Command(BaseCommand):
    help = (
        "Show, or with --apply create (ACL SETUSER), the Redis users: tec-controlplane, tec-node "
        "and tec-client-NAME per active trading client, each with only the keys and commands it "
        "needs (controlplane/redis_acl.py). Connects with REDIS_ADMIN_URL (default REDIS_URL). "
        "Passwords are kept in --dir (made on first use) next to a URL per user, redis-USER.url, "
        "for the processes' REDIS_URL. --lock-default turns the password-less default user off "
        "(production; it locks out every client that has no user)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--apply", action="store_true", help="run ACL SETUSER on the server")
        parser.add_argument("--dir", default="run", help="where passwords and URLs are kept (default run/)")
        parser.add_argument("--lock-default", action="store_true", help="turn the default user off")

    def handle(self, *args, apply: bool, dir: str, lock_default: bool, **options) -> None:
        users = redis_acl.users(TradingClient.objects.filter(active=True).values_list("name", flat=True))
        if not apply:
            for name, rules in users.items():
                self.stdout.write(f"ACL SETUSER {name} reset on >******** {' '.join(rules)}")
            return
        folder = Path(dir)
        folder.mkdir(parents=True, exist_ok=True)
        admin = redis.Redis.from_url(env_str("REDIS_ADMIN_URL", settings.REDIS_URL), socket_connect_timeout=3)
        try:
            for name, rules in users.items():
                password = _remembered(folder / f"redis-{name}.password")
                redis_acl.set_user(admin, name, password, rules)
                _write_private(folder / f"redis-{name}.url", redis_acl.url_for(settings.REDIS_URL, name, password))
                self.stdout.write(f"Redis user {name}: URL in {folder / f'redis-{name}.url'}")
            if lock_default:
                admin.execute_command("ACL", "SETUSER", "default", "off")
                self.stdout.write("the default user is off")
        except redis.RedisError as error:
            raise CommandError(f"Redis refused the ACL change: {error}") from None


def _remembered(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    password = redis_acl.new_password()
    _write_private(path, password)
    return password


def _write_private(path: Path, text: str) -> None:
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
