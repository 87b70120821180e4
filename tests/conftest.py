"""For the whole suite: passwords hashed fast (Django's advice for tests).

The default hasher (PBKDF2, as production keeps) takes ~0.25 s a password by design, on
a fast machine: every test that made an operator, a viewer and an admin paid it three
times (the hostile-input file alone spent 22 s in its fixtures). Passwords are still
hashed and checked, by Django's MD5 hasher, inside this process only: node workers and
other subprocesses check no password made here.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield
