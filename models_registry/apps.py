from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The deploy checks (check --deploy) register themselves on import.
        from models_registry import checks  # noqa: F401
