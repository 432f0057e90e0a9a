from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from models_registry.guards import register_sqlite_gate

        # Every SQLite connection gets the gate function its status triggers call.
        connection_created.connect(register_sqlite_gate, dispatch_uid="tradebot_sqlite_gate")
        # The deploy checks (check --deploy) register themselves on import.
        from models_registry import checks  # noqa: F401
