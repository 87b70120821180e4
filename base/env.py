"""Typed readers for configuration from the environment (12-factor), with clear errors."""

from __future__ import annotations

import os


class ConfigError(ValueError):
    """A setting in the environment has a value we cannot use."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name)
    if value is None:
        file_name = os.environ.get(f"{name}_FILE")
        if file_name:
            with open(file_name, encoding="utf-8") as handle:
                return handle.read().strip()
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above the maximum: at most {maximum:g}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def redis_tls_options(url: str) -> dict | None:
    """Celery's TLS options for a rediss:// URL (redis-py reads the URL itself): verify the
    server's certificate, against REDIS_CA_FILE when set; None for redis://."""
    if not url.startswith("rediss://"):
        return None
    import ssl

    options: dict = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    ca_file = os.environ.get("REDIS_CA_FILE")
    if ca_file:
        options["ssl_ca_certs"] = ca_file
    return options
