"""API fixtures: a live server on the test database, tokens for people in every role, and a
small ``requests`` client that speaks to the server as a CI job would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.cache import cache

from models_registry import roles
from models_registry.services import api_tokens
from tests.registry.conftest import (  # noqa: F401 -- fixtures, used by name
    approver,
    artifact_dir,
    auditor,
    deployer,
    engineer,
    fast_password_hashing,
    make_user,
    media_root,
    production_target,
    staging_target,
    superuser,
    version_factory,
)


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> None:
    """Throttle counts live in the cache; each test starts with none."""
    cache.clear()


@dataclass
class Api:
    """An HTTP client for /api/v1/ with one token, as a CI job holds it."""

    base: str
    token: str | None
    session: requests.Session = field(default_factory=requests.Session)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}/api/v1/{path.lstrip('/')}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(
            self.url(path), headers=self.headers(kwargs.pop("headers", None)), timeout=60, **kwargs
        )

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(
            self.url(path), headers=self.headers(kwargs.pop("headers", None)), timeout=120, **kwargs
        )


def token_for(user: Any, name: str = "ci") -> str:
    _token, secret = api_tokens.api_token_create(user=user, name=name, created_by=user)
    return secret


@pytest.fixture
def api_for(live_server: Any) -> Callable[[Any], Api]:
    """``api_for(user)``: a client holding a fresh token of that user (None: no token)."""

    def make(user: Any) -> Api:
        return Api(live_server.url, token_for(user) if user is not None else None)

    return make


@pytest.fixture
def nobody(db: None) -> Any:
    """A staff user in no role."""
    return make_user("nora_norole")


@pytest.fixture
def people(
    engineer: Any,  # noqa: F811
    approver: Any,  # noqa: F811
    deployer: Any,  # noqa: F811
    auditor: Any,  # noqa: F811
    superuser: Any,  # noqa: F811
    nobody: Any,
) -> dict[str, Any]:
    return {
        roles.ML_ENGINEER: engineer,
        roles.APPROVER: approver,
        roles.DEPLOYER: deployer,
        roles.AUDITOR: auditor,
        "superuser": superuser,
        "no role": nobody,
    }


def upload_files(folder: Path) -> dict[str, tuple[str, bytes]]:
    """The multipart files of a registration, as `curl -F name=@file` sends them."""
    onnx = next(folder.glob("*.onnx"))
    metadata = next(folder.glob("*_metadata.json"))
    files = {
        "onnx_file": (onnx.name, onnx.read_bytes()),
        "metadata_file": (metadata.name, metadata.read_bytes()),
    }
    plot = next(folder.glob("*_training.png"), None)
    if plot is not None:
        files["plot_file"] = (plot.name, plot.read_bytes())
    return files


def store_entries(media: Path) -> list[str]:
    """Everything in the artifact store, so a test can say nothing was added."""
    return sorted(str(p.relative_to(media)) for p in media.rglob("*")) if media.exists() else []
