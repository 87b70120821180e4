"""Test helper: the Redis users of controlplane/redis_acl.py created on a private server."""

from __future__ import annotations

import redis

from controlplane import redis_acl


def make_users(admin_url: str, clients: tuple[str, ...] = ("trader",)) -> dict[str, str]:
    """Create tec-controlplane, tec-node and tec-client-NAME per client with fresh
    passwords (ACL SETUSER through `admin_url`); returns each user's URL."""
    admin = redis.Redis.from_url(admin_url)
    urls = {}
    try:
        for name, rules in redis_acl.users(clients).items():
            password = redis_acl.new_password()
            redis_acl.set_user(admin, name, password, rules)
            urls[name] = redis_acl.url_for(admin_url, name, password)
    finally:
        admin.close()
    return urls
