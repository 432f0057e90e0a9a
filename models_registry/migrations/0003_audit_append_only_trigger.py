from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION models_registry_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'models_registry_auditevent is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS models_registry_audit_append_only ON models_registry_auditevent;
CREATE TRIGGER models_registry_audit_append_only
    BEFORE UPDATE OR DELETE ON models_registry_auditevent
    FOR EACH ROW EXECUTE FUNCTION models_registry_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS models_registry_audit_append_only ON models_registry_auditevent;
DROP FUNCTION IF EXISTS models_registry_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0002_roles")]

    operations = [migrations.RunPython(forwards, backwards)]
