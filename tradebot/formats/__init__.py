"""Date formats for every page Django renders (FORMAT_MODULE_PATH in settings).

Admin lists and detail pages render datetimes with Django's locale formats, whose
English default ("Jan. 1, 2024, 10 a.m.") has no zone and no seconds. Pages a person
reads for the audit trail show ISO 8601 in UTC with the zone, as
``models_registry.formatting.utc`` does: "2024-01-01 10:00:00 UTC".
"""
