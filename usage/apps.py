from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from routes.audit import audit_register
        from routes.signals import snapshot_watch

        from .limits import admin  # noqa: F401  (the Limit admin lives beside the limiter)
        from .models import Limit

        snapshot_watch(Limit)  # limits are in the serving snapshot
        audit_register(Limit, "limit")
