from django.apps import AppConfig


class RoutesConfig(AppConfig):
    name = "routes"
    verbose_name = "Routes, consumers and keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import audit, signals  # noqa: F401  (audit log and snapshot invalidation on change)
