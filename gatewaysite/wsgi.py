"""WSGI entry point (admin and management API only; serving needs the ASGI app)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")
application = get_wsgi_application()
