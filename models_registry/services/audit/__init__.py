"""The hash-chained, append-only audit trail, one concern per module:

- chain: the writer (audit_event_record), the row payload and its hash;
- canonical: the canonical JSON form the chain hashes and anchors sign;
- key: the HMAC key, from outside the database;
- anchors: the chain head recorded outside the table (anchor file, host copies);
- verify: verify_audit_chain, its row-by-row reference walk and PostgreSQL reading path;
- payload: the fast walk over stored payloads; prefetch: one batch fetched ahead.

Every name callers imported from ``models_registry.services.audit`` before the split is
re-exported here, so ``from models_registry.services.audit import X`` keeps working.
"""

from models_registry.services.audit.anchors import (
    Anchor,
    anchor_append,
    anchor_line,
    anchor_text,
    anchors_in_conflict,
    audit_anchor_file,
    chain_head,
    parse_anchor_lines,
)
from models_registry.services.audit.canonical import canonical_json, canonical_json_of_loaded
from models_registry.services.audit.chain import (
    _CONFIGURED,
    GENESIS_HASH,
    RowContent,
    _digester,
    _normalise_data,
    audit_event_record,
    compute_row_hash,
    row_payload,
)
from models_registry.services.audit.key import audit_hmac_key
from models_registry.services.audit.prefetch import _prefetched
from models_registry.services.audit.verify import (
    ChainReport,
    HashedRow,
    _iter_hashed,
    _pg_batches,
    verify_audit_chain,
)

__all__ = [
    "GENESIS_HASH",
    "_CONFIGURED",
    "Anchor",
    "ChainReport",
    "HashedRow",
    "RowContent",
    "_digester",
    "_iter_hashed",
    "_normalise_data",
    "_pg_batches",
    "_prefetched",
    "anchor_append",
    "anchor_line",
    "anchor_text",
    "anchors_in_conflict",
    "audit_anchor_file",
    "audit_event_record",
    "audit_hmac_key",
    "canonical_json",
    "canonical_json_of_loaded",
    "chain_head",
    "compute_row_hash",
    "parse_anchor_lines",
    "row_payload",
    "verify_audit_chain",
]
