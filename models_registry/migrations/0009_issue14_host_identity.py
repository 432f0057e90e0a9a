"""A host (address, effective port, effective install root) belongs to one target only,
held by a unique constraint on a normalised column the model fills on every save."""

from typing import Any

from django.db import migrations, models


def fill_identity(apps: Any, schema_editor: Any) -> None:
    # Historical models have no custom save(): compute the same key as host_identity_key.
    host_model = apps.get_model("models_registry", "DeploymentHost")
    for host in host_model.objects.select_related("target"):
        target = host.target
        root = (host.install_root or target.install_root).rstrip("/") or "/"
        host.identity = f"{host.hostname.strip().lower()}:{host.port or target.ssh_port}:{root}"
        host.save(update_fields=["identity"])


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0008_issue12b_version_windows"),
    ]

    operations = [
        migrations.AddField(
            model_name="deploymenthost",
            name="identity",
            field=models.CharField(default="", editable=False, max_length=600),
            preserve_default=False,
        ),
        migrations.RunPython(fill_identity, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="deploymenthost",
            constraint=models.UniqueConstraint(
                fields=("identity",), name="host_belongs_to_one_target"
            ),
        ),
    ]
