"""WSGI entry point for serving the control plane (gunicorn: see controlplane/gunicorn_conf.py)."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
application = get_wsgi_application()

from django.conf import settings  # noqa: E402  (configured by get_wsgi_application)

if not settings.DEBUG and settings.SECRET_KEY == settings.DEV_SECRET_KEY:
    # Sessions and CSRF tokens signed with a key everyone can read are forgeable.
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: the web server does not serve with the development key unless "
        "DEBUG is on. Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value."
    )
