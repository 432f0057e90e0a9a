"""{% load registry_policy %}{% policy_block obj %}: the policy a decision was made under.

``obj`` is a model version, a validation run or a paper run. The logic is in
``models_registry.selectors_policy``; the partial only lays it out.
"""

from __future__ import annotations

from typing import Any

from django import template

from models_registry.selectors_policy import policy_summary

register = template.Library()


@register.inclusion_tag("admin/models_registry/includes/policy_in_force.html")
def policy_block(obj: Any) -> dict[str, Any]:
    if obj is None or getattr(obj, "pk", None) is None:
        return {"summary": None}
    return {"summary": policy_summary(obj)}
