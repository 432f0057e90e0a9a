"""Canonical JSON: the one byte form the audit chain hashes and anchors sign."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

# One encoder for every call: json.dumps with options builds a new encoder each
# time, which was a large share of verifying a million rows.
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> str:
    return _CANONICAL_ENCODER.encode(value)


# JSONEncoder.encode builds its C encoder again on every call, about half the cost of
# encoding a small dict; the verifier's hot loop uses one built once with the same options.
# No circular-reference check: what json.loads returns cannot be circular.
_C_CANONICAL = c_make_encoder and c_make_encoder(
    None, str, encode_basestring, None, ":", ",", True, False, True
)


def canonical_json_of_loaded(value: Any) -> str:
    """canonical_json, byte for byte, of a value json.loads returned."""
    if _C_CANONICAL is None:  # a Python without the json C accelerator
        return canonical_json(value)
    return "".join(_C_CANONICAL(value, 0))
