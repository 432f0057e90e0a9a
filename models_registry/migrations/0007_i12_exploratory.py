from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0006_i14b_sqlite_audit_triggers")]

    operations = [
        migrations.AddField(
            model_name="validationrun",
            name="exploratory",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="validationrun",
            name="exploratory_reasons",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
