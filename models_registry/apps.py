from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from models_registry.guards import register_sqlite_gate

        # Every SQLite connection gets the gate function its status triggers call.
        connection_created.connect(register_sqlite_gate, dispatch_uid="tradebot_sqlite_gate")
        from models_registry.sqlite_triggers import sqlite_triggers_reinstall

        # A table rebuilt by a later migration on SQLite loses its triggers: put them back.
        post_migrate.connect(
            sqlite_triggers_reinstall, sender=self, dispatch_uid="tradebot_sqlite_triggers"
        )
        from models_registry import approval_mails, signals

        # The approval mails are built from page evidence: the lifecycle signals, they write.
        signals.approval_requested.connect(
            approval_mails.on_approval_requested, dispatch_uid="tradebot_approval_requested"
        )
        signals.approval_decided.connect(
            approval_mails.on_approval_decided, dispatch_uid="tradebot_approval_decided"
        )
        from models_registry.services import forward

        # A staged version starts paper trading forward on its staging target.
        signals.staging_deployed.connect(
            forward.on_staging_deployed, dispatch_uid="tradebot_forward_run_start"
        )
        # The deploy checks (check --deploy) register themselves on import.
        from models_registry import checks  # noqa: F401
