"""The engine the test hosts run as their service, and the models deployed to them.

The real engine (`python -m engine.live`) with a tiny model trained by
engine.training is what the test hosts run. The stand-in (`fake_engine.py`, same contract)
is used only when TRADEBOT_DEPLOY_TEST_ENGINE=stand-in asks for it by name (quick
iterations); a real engine that fails to start fails the tests instead.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deployment.targets import ArtifactSpec, model_filenames
from tests.support.budgets import budget
from tests.support.temp_folders import TempFolderFactory

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
MODEL_NAME = "btcusdt_sentiment"
ENGINE_CHOICE_VARIABLE = "TRADEBOT_DEPLOY_TEST_ENGINE"


def stand_in_requested() -> bool:
    """Whether the run asked for the stand-in engine by name (quick iterations only)."""
    return os.environ.get(ENGINE_CHOICE_VARIABLE) == "stand-in"


@functools.cache
def real_engine_usable() -> bool:
    """Whether to run the real engine: unless the stand-in is asked for, it must start.

    A real engine that cannot start fails the tests: they never quietly test less.
    """
    if stand_in_requested():
        return False
    try:
        result = subprocess.run(
            [sys.executable, "-m", "engine.live", "--help"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            timeout=budget(60),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"the real engine did not start (`python -m engine.live --help`): {error}")
    if result.returncode != 0 or b"--check-only" not in result.stdout:
        pytest.fail(
            "the real engine did not start (`python -m engine.live --help` exited "
            f"{result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}"
        )
    return True


@dataclass(frozen=True)
class EngineSetup:
    """How a test host starts the engine and checks a model folder."""

    real: bool
    data_dir: Path | None = None
    replay_from: pd.Timestamp | None = None
    # Forward paper trading: the live feed against a fake exchange on its accelerated clock
    # (tests.fakes.processes) instead of a replay. Set with `forward()`.
    binance_url: str | None = None
    fng_url: str | None = None
    poll_seconds: float = 0.02

    def forward(self, binance_url: str, fng_url: str | None) -> EngineSetup:
        """The same engine, paper trading forward on the exchange at `binance_url`."""
        return dataclasses.replace(self, binance_url=binance_url, fng_url=fng_url)

    def command(self, model_dir: Path, status_file: Path, journal_dir: Path) -> list[str]:
        common = [
            "ml_basic",
            "--paper-trading",
            "--model-dir",
            str(model_dir),
            "--model",
            MODEL_NAME,
            "--status-file",
            str(status_file),
        ]
        if not self.real:
            return [sys.executable, str(FAKE_ENGINE), *common]
        assert self.data_dir is not None and self.replay_from is not None
        if self.binance_url is not None:
            return [
                sys.executable, "-m", "engine.live", *common, "--journal-dir", str(journal_dir),
                "--clock", "exchange", "--poll-seconds", repr(self.poll_seconds),
                "--binance-url", self.binance_url,
                *(["--fng-url", self.fng_url] if self.fng_url else []),
                "--sentiment-csv", str(self.data_dir / "fear_greed_index.csv"),
            ]  # fmt: skip
        # Replaying real candles at real speed (one bar an hour) keeps the engine running
        # as a service would, without any network.
        return [
            sys.executable,
            "-m",
            "engine.live",
            *common,
            "--journal-dir",
            str(journal_dir),
            "--replay",
            "--candles-csv",
            str(self.data_dir / "BTCUSDT-1h.csv"),
            "--sentiment-csv",
            str(self.data_dir / "fear_greed_index.csv"),
            "--from",
            self.replay_from.isoformat(),
            "--speed",
            "1",
        ]

    def environment(self) -> str:
        """Shell assignments prefixed to the engine command on the host."""
        return f"PYTHONPATH={PROJECT_ROOT}" if self.real else ""

    def check_only_command(self) -> str:
        """The staging check command template (the engine's --check-only on uploaded files)."""
        program = "-m engine.live" if self.real else str(FAKE_ENGINE)
        return (
            f"cd {PROJECT_ROOT} && {sys.executable} {program} ml_basic --paper-trading"
            " --model-dir {candidate_dir} --model {name} --check-only --json"
        )


@dataclass
class ModelFactory:
    """Model versions to deploy. With the real engine, each version is the tiny trained
    model with a distinct ONNX doc string (so a distinct sha256, same weights)."""

    directory: Path
    base_dir: Path | None
    counter: int = 0

    def make(
        self, version: int, *, size: int = 0, metadata_sha256: str | None = None
    ) -> ArtifactSpec:
        """A model version. `size` pads the ONNX file to about that many bytes;
        `metadata_sha256` set to a wrong value makes the engine refuse it at start-up."""
        self.counter += 1
        folder = self.directory / f"model-{self.counter}"
        folder.mkdir()
        names = model_filenames(MODEL_NAME)
        onnx_path, metadata_path = folder / names.onnx, folder / names.metadata
        metadata = self._write_onnx(onnx_path, size)
        onnx_sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        metadata.update(version=version, onnx_sha256=metadata_sha256 or onnx_sha)
        metadata_path.write_text(json.dumps(metadata, indent=2))
        return ArtifactSpec.from_files(
            name=MODEL_NAME, version=version, onnx_path=onnx_path, metadata_path=metadata_path
        )

    def _write_onnx(self, path: Path, size: int) -> dict[str, Any]:
        if self.base_dir is None:
            path.write_bytes(os.urandom(max(size, 64 * 1024)))
            return {"name": MODEL_NAME, "symbol": "BTCUSDT"}
        import onnx

        names = model_filenames(MODEL_NAME)
        model = onnx.load(self.base_dir / names.onnx)
        model.doc_string = f"deployment test variant {self.counter}"
        if size:
            entry = model.metadata_props.add()
            entry.key, entry.value = "padding", "x" * size
        onnx.save(model, path)
        return json.loads((self.base_dir / names.metadata).read_text())


def _trained_base(data_dir: Path, factory: TempFolderFactory) -> tuple[Path, pd.Timestamp]:
    from tests.engine.training.tiny_models import trained_tiny_model

    tiny = trained_tiny_model("sentiment", data_dir, factory)
    base = factory.mktemp("deploy-base-model")
    for file in tiny.model_dir.iterdir():
        shutil.copy(file, base / file.name)
    return base, tiny.candles.index[-1] + pd.Timedelta(hours=1)


def engine_setup(data_dir: Path, factory: TempFolderFactory) -> tuple[EngineSetup, Path | None]:
    """The engine to run (real when usable) and the base model folder it needs."""
    if not real_engine_usable():
        return EngineSetup(real=False), None
    base, replay_from = _trained_base(data_dir, factory)
    return EngineSetup(real=True, data_dir=data_dir, replay_from=replay_from), base
