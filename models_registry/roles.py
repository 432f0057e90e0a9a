"""The four roles, as Django groups, and the permissions each one holds."""

from __future__ import annotations

REGISTRY_MODELS = (
    "modelversion",
    "validationrun",
    "papertradingrun",
    "deploymenttarget",
    "deploymenthost",
    "deployment",
    "approval",
    "approvalsuspension",
    "auditevent",
)
VIEW_REGISTRY = tuple(f"view_{model}" for model in REGISTRY_MODELS)

ML_ENGINEER = "ML engineer"
APPROVER = "Approver"
DEPLOYER = "Deployer"
AUDITOR = "Auditor"

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    ML_ENGINEER: (
        *VIEW_REGISTRY,
        "train_model",
        "validate_modelversion",
        "papertrade_modelversion",
        "stage_modelversion",
        "register_modelversion",
    ),
    APPROVER: (*VIEW_REGISTRY, "approve_modelversion", "reject_modelversion"),
    DEPLOYER: (*VIEW_REGISTRY, "deploy_modelversion", "rollback_modelversion"),
    AUDITOR: (*VIEW_REGISTRY, "export_audit"),
}
