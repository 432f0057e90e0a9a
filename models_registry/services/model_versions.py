"""One concern: registering model versions into the write-once artifact store.

Creating model versions from a folder of artifacts, and the artifact store.

The store (``MEDIA_ROOT/models/<sha256 of the ONNX file>/``) is write-once: a
version's files are copied into a temporary folder, checked, then published
with one rename, and made read-only. File names are derived from the metadata
(``<name>.onnx``, ``<name>_metadata.json``, ``<SYMBOL>_<kind>_training.png``),
never from a client.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from models_registry.events import EventType
from models_registry.market_conditions import (
    MarketConditionsError,
    check_override_reason,
    missing_conditions,
)
from models_registry.models import ModelVersion, RegistryError
from models_registry.onnx_check import check_onnx_in_subprocess
from models_registry.safe_files import (
    UnsafeInput,
    copy_regular,
    parse_metadata,
    safe_name,
    scan_folder,
)
from models_registry.services.audit import audit_event_record
from models_registry.services.lineage import (
    LineageCheck,
    LineageRefused,
    lineage_apply,
    lineage_verify,
)
from models_registry.services.provenance import refuse_anonymous
from models_registry.services.trials import trials_record_for_version
from models_registry.windows import WindowError, declared_contradiction, version_windows

P = ParamSpec("P")
R = TypeVar("R")

NAME_PATTERN = re.compile(r"^[a-z0-9]{1,20}_(sentiment|price)$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
INTERVAL_PATTERN = re.compile(r"^[1-9][0-9]{0,2}[smhdwM]$")
# A metadata file is a few kilobytes; anything far larger is not one of ours.
MAX_METADATA_BYTES = 5 * 1024 * 1024


class ArtifactError(RegistryError):
    """The artifacts offered for a new version are missing, malformed or inconsistent."""


@dataclass(frozen=True)
class ArtifactSet:
    name: str
    symbol: str
    interval: str
    kind: str
    metadata: dict[str, Any]
    onnx_path: Path
    metadata_path: Path
    plot_path: Path | None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_store_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "models"


def version_dir(version: ModelVersion) -> Path:
    return Path(settings.MEDIA_ROOT) / version.artifact_dir


def read_artifact_set(source_dir: Path) -> ArtifactSet:
    """Find and check the metadata, ONNX file and plot in ``source_dir``."""
    if not source_dir.is_dir():
        raise ArtifactError(f"{source_dir} is not a folder of model artifacts.")
    candidates = sorted(source_dir.glob("*_metadata.json"))
    if len(candidates) != 1:
        raise ArtifactError(
            f"{source_dir} must hold exactly one *_metadata.json file; found {len(candidates)}."
        )
    metadata_path = candidates[0]
    metadata = _read_metadata(metadata_path)
    name = str(metadata.get("name", ""))
    if not NAME_PATTERN.match(name):
        raise ArtifactError(
            f"{metadata_path.name}: name {name!r} must look like "
            "'btcusdt_sentiment' or 'btcusdt_price'."
        )
    symbol = str(metadata.get("symbol", "")).upper()
    kind = name.rsplit("_", 1)[1]
    if not symbol or not name.startswith(symbol.lower() + "_"):
        raise ArtifactError(
            f"{metadata_path.name}: symbol {symbol!r} does not match name {name!r}."
        )
    interval = str(metadata.get("interval", "1h"))
    if not INTERVAL_PATTERN.match(interval):
        raise ArtifactError(
            f"{metadata_path.name}: interval {interval!r} is not like '1h' or '15m'."
        )
    onnx_path = source_dir / _safe(name, suffix=".onnx")
    if not onnx_path.is_file():
        raise ArtifactError(f"{source_dir} has no {onnx_path.name} beside {metadata_path.name}.")
    _refuse_symlink(onnx_path)
    expected = str(metadata.get("onnx_sha256", ""))
    if not SHA256_PATTERN.match(expected):
        raise ArtifactError(f"{metadata_path.name} has no valid onnx_sha256.")
    actual = sha256_of(onnx_path)
    if actual != expected:
        raise ArtifactError(
            f"{onnx_path.name} has sha256 {actual[:12]}…, but its metadata says {expected[:12]}…."
        )
    plot_path = source_dir / _safe(symbol, kind, "training", suffix=".png")
    return ArtifactSet(
        name=name,
        symbol=symbol,
        interval=interval,
        kind=kind,
        metadata=metadata,
        onnx_path=onnx_path,
        metadata_path=metadata_path,
        plot_path=plot_path if plot_path.is_file() else None,
    )


def _read_metadata(metadata_path: Path) -> dict[str, Any]:
    _refuse_symlink(metadata_path)
    size = metadata_path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise ArtifactError(
            f"{metadata_path.name} is {size} bytes; "
            f"a metadata file is at most {MAX_METADATA_BYTES}."
        )
    try:
        raw = metadata_path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{metadata_path.name} cannot be read: {exc.strerror}") from exc
    try:
        # Nesting too deep for jsonb or the hashing is refused here, not as a crash later.
        return parse_metadata(raw, source=metadata_path.name)
    except UnsafeInput as exc:
        raise ArtifactError(str(exc)) from exc


def _safe(*parts: str, suffix: str) -> str:
    """safe_name (the one builder of file names from untrusted input), as an ArtifactError."""
    try:
        return safe_name(*parts, suffix=suffix)
    except UnsafeInput as exc:
        raise ArtifactError(str(exc)) from exc


def _refuse_json_constant(token: str) -> Any:
    # NaN and Infinity are not JSON; PostgreSQL would refuse them later, less clearly.
    raise ValueError(f"{token} is not a JSON number")


def _refuse_symlink(path: Path) -> None:
    # The store holds copies of real files; a link could point anywhere on this machine.
    if path.is_symlink():
        raise ArtifactError(f"{path.name} is a symbolic link; offer the file itself.")


def model_version_create(
    *,
    source_dir: Path,
    created_by: User | None,
    source: str = "trained",
    origin_key: str | None = None,
    conditions_override: dict[str, str] | None = None,
    lineage: LineageCheck | None = None,
) -> ModelVersion:
    """Store the artifacts in ``source_dir`` and create a ``trained`` version for them.

    Idempotent on ``origin_key``: a training task delivered twice gets the
    version the first delivery created. ``conditions_override`` (``reason`` and the
    ``failure`` it overrides) is recorded as one audit event in the same transaction.
    """
    if origin_key:
        existing = ModelVersion.objects.filter(origin_key=origin_key).first()
        if existing is not None:
            return existing
    artifacts = read_artifact_set(source_dir)
    for attempt in range(3):
        try:
            return _create_once(
                artifacts, created_by, source, origin_key, conditions_override, lineage
            )
        except IntegrityError:
            if origin_key and ModelVersion.objects.filter(origin_key=origin_key).exists():
                return ModelVersion.objects.get(origin_key=origin_key)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


# --- registering a model trained elsewhere ---------------------------------------

DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024
DEFAULT_ONNX_CHECK_TIMEOUT_SECONDS = 60.0


class RegistrationRefused(ArtifactError):
    """The offered model failed a check; nothing was stored."""


def max_upload_bytes() -> int:
    return int(getattr(settings, "TRADEBOT_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))


def onnx_check_timeout() -> float:
    return float(
        getattr(settings, "TRADEBOT_ONNX_CHECK_TIMEOUT", DEFAULT_ONNX_CHECK_TIMEOUT_SECONDS)
    )


def audited_registration_refusal(func: Callable[P, R]) -> Callable[P, R]:
    """Record a refused registration (CLI or admin upload alike) once, then re-raise it."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RegistryError as exc:
            actor = kwargs.get("registered_by")
            if not getattr(exc, "audited", False) and getattr(actor, "is_authenticated", False):
                folder = kwargs.get("source_dir")
                audit_event_record(
                    event_type=EventType.MODEL_VERSION_REGISTER_REFUSED,
                    actor=actor,  # type: ignore[arg-type]
                    data={"reason": str(exc), "folder": str(folder) if folder else ""},
                )
                exc.audited = True  # type: ignore[attr-defined]
            raise

    return wrapper


@audited_registration_refusal
def model_version_register(
    *,
    source_dir: Path,
    registered_by: User | None,
    out_of_sample_from: datetime | None = None,
    allow_missing_conditions: str | None = None,
) -> tuple[ModelVersion, dict[str, Any]]:
    """Register a model trained elsewhere: the admin upload form and ``register_model`` call this.

    The ONNX file is untrusted: its size is checked before it is read, then
    ``onnx.checker`` and an ONNX Runtime load run in a separate, time-limited
    process. A declared ``out_of_sample_from`` must be the metadata's first unseen bar;
    training data missing a market condition is refused unless ``allow_missing_conditions``
    gives the reason. Returns the new version and the checker's report (inputs, outputs).
    """
    refuse_anonymous(registered_by, what="registering a model")
    try:
        # Links, FIFOs and devices anywhere in the folder, and oversized files, are refused
        # before anything is read (register_model followed a symlinked plot, #26).
        scan_folder(source_dir)
    except UnsafeInput as exc:
        raise RegistrationRefused(str(exc)) from exc
    _refuse_oversized(source_dir)
    artifacts = read_artifact_set(source_dir)
    _refuse_declared_window(artifacts, out_of_sample_from)
    override = market_conditions_gate(artifacts.metadata, allow_missing_conditions)
    check = check_onnx_in_subprocess(artifacts.onnx_path, onnx_check_timeout())
    if not check.get("ok"):
        raise RegistrationRefused(f"{artifacts.onnx_path.name}: {check.get('error')}")
    if check.get("sha256") != artifacts.metadata["onnx_sha256"]:
        raise RegistrationRefused(
            f"{artifacts.onnx_path.name} changed while it was being checked; try again."
        )
    _refuse_io_mismatch(artifacts.metadata, check, artifacts.metadata_path.name)
    _refuse_contradicting_windows(artifacts.metadata, artifacts.metadata_path.name)
    lineage = _lineage_checked(artifacts)
    version = model_version_create(
        source_dir=source_dir,
        created_by=registered_by,
        source="registered",
        conditions_override=override,
        lineage=lineage,
    )
    return version, check


def _lineage_checked(artifacts: ArtifactSet) -> LineageCheck:
    """The model's account of its training, checked against itself and the store (#25)."""
    try:
        return lineage_verify(
            artifacts.metadata,
            symbol=artifacts.symbol,
            interval=artifacts.interval,
            now=timezone.now(),
        )
    except LineageRefused as exc:
        raise RegistrationRefused(f"{artifacts.metadata_path.name}: {exc}") from exc


def _refuse_declared_window(artifacts: ArtifactSet, declared: datetime | None) -> None:
    if declared is None:
        return
    if declared.tzinfo is None:
        declared = declared.replace(tzinfo=UTC)
    problem = declared_contradiction(
        declared, metadata_windows(artifacts.metadata, artifacts.interval)
    )
    if problem:
        raise RegistrationRefused(f"{artifacts.metadata_path.name}: {problem}")


def market_conditions_gate(metadata: dict[str, Any], reason: str | None) -> dict[str, str] | None:
    """The training gate on market conditions; returns the override to record, if one is used.

    Raises ArtifactError naming what is missing when there is no written reason.
    """
    try:
        reason = check_override_reason(reason)
        failure = missing_conditions(metadata)
    except MarketConditionsError as exc:
        raise ArtifactError(str(exc)) from exc
    if failure is None:
        return None
    if reason is None:
        raise ArtifactError(
            f"{failure}; train on a longer or other window, or override with "
            '--allow-missing-conditions "REASON"'
        )
    return {"reason": reason, "failure": failure}


def _refuse_contradicting_windows(metadata: dict[str, Any], source: str) -> None:
    """A declared first unseen bar inside the bars it was fit or chosen on is refused (#12)."""
    from engine.backtest.errors import BacktestError
    from engine.backtest.guards import window_contradictions

    try:
        problems = window_contradictions(metadata)
    except BacktestError as exc:
        raise RegistrationRefused(f"{source}: {exc}") from exc
    if problems:
        raise RegistrationRefused(f"{source}: the declared windows contradict: {problems[0]}")


def _refuse_oversized(source_dir: Path) -> None:
    """Before reading or hashing anything: a huge file is refused by its size alone."""
    if not source_dir.is_dir():
        raise RegistrationRefused(f"{source_dir} is not a folder.")
    limit = max_upload_bytes()
    for path in sorted(source_dir.iterdir()):
        if path.suffix in (".onnx", ".json", ".png") and path.is_file():
            size = path.stat().st_size
            if size > limit:
                raise RegistrationRefused(
                    f"{path.name} is {size} bytes, above the limit of {limit} bytes "
                    "(setting TRADEBOT_MAX_UPLOAD_BYTES)."
                )


def _refuse_io_mismatch(metadata: dict[str, Any], check: dict[str, Any], source: str) -> None:
    """The metadata's declared input/output names must be the ones the file really has."""
    raw_declared = metadata.get("onnx")
    declared: dict[str, Any] = raw_declared if isinstance(raw_declared, dict) else {}
    for key, side in (("input_name", "inputs"), ("output_name", "outputs")):
        expected = declared.get(key)
        actual = [arg["name"] for arg in check.get(side, [])]
        if expected and expected not in actual:
            raise RegistrationRefused(
                f"{source}: onnx.{key} is {expected!r} but the model's {side} are {actual}."
            )


def _create_once(
    artifacts: ArtifactSet,
    created_by: User | None,
    source: str,
    origin_key: str | None,
    conditions_override: dict[str, str] | None = None,
    lineage: LineageCheck | None = None,
) -> ModelVersion:
    sha = artifacts.metadata["onnx_sha256"]
    # An unverified account is judged only on bars after its registration (#25).
    account = (
        lineage_apply(artifacts.metadata, lineage, now=timezone.now(), interval=artifacts.interval)
        if lineage is not None
        else artifacts.metadata
    )
    final_dir = artifact_store_root() / sha
    with transaction.atomic():
        # The sha first, then the name: one order for every writer, so no deadlock.
        _advisory_lock(f"sha:{sha}")
        _advisory_lock(f"name:{artifacts.name}")
        duplicate = ModelVersion.objects.filter(onnx_sha256=sha).first()
        if duplicate is not None:
            raise ArtifactError(f"this ONNX file is already registered as {duplicate}.")
        data_fields = _data_fields(account, artifacts.interval)
        number = (
            ModelVersion.objects.filter(name=artifacts.name).aggregate(n=Max("version"))["n"] or 0
        ) + 1
        metadata = {**account, "version": number}
        staged_dir = _stage_files(artifacts, metadata)
        try:
            version = ModelVersion.objects.create(
                name=artifacts.name,
                version=number,
                symbol=artifacts.symbol,
                interval=artifacts.interval,
                kind=artifacts.kind,
                source=source,
                created_by=created_by if created_by and created_by.is_authenticated else None,
                artifact_dir=str(final_dir.relative_to(settings.MEDIA_ROOT)),
                onnx_file=artifacts.onnx_path.name,
                onnx_sha256=sha,
                metadata_file=artifacts.metadata_path.name,
                metadata_sha256=sha256_of(staged_dir / artifacts.metadata_path.name),
                plot_file=artifacts.plot_path.name if artifacts.plot_path else "",
                plot_sha256=(
                    sha256_of(staged_dir / artifacts.plot_path.name) if artifacts.plot_path else ""
                ),
                metadata=metadata,
                metrics=_metrics_from(metadata),
                **data_fields,
                origin_key=origin_key,
            )
            audit_event_record(
                event_type=(
                    EventType.MODEL_VERSION_REGISTERED
                    if source == "registered"
                    else EventType.MODEL_VERSION_TRAINED
                ),
                actor=created_by,
                obj=version,
                data={
                    "new_state": version.state,
                    "onnx_sha256": sha,
                    "source": source,
                    # Filled candles are on record, not only in the metadata file.
                    **_repair_of(metadata),
                    **({"lineage": metadata["lineage_check"]} if lineage is not None else {}),
                },
            )
            trials_record_for_version(version)  # counted for its validations' DSR (#12)
            if conditions_override is not None:
                audit_event_record(
                    event_type="market_conditions_override",
                    actor=created_by,
                    obj=version,
                    data=dict(conditions_override),
                )
            _publish(staged_dir, final_dir)
        except BaseException:
            shutil.rmtree(staged_dir, ignore_errors=True)
            raise
    return version


def _data_fields(metadata: dict[str, Any], interval: str) -> dict[str, Any]:
    """The lineage and window columns, checked before anything is written.

    ``out_of_sample_from`` is the first unseen bar when the splits prove one (the test split
    counts as seen), else the metadata's declaration: the two columns never disagree.
    """
    declared = _dt(metadata.get("out_of_sample_from"), "out_of_sample_from")
    windows = metadata_windows(metadata, interval)
    return {
        "data_start": _dt(_dig(metadata, "data", "start"), "data.start"),
        "data_end": _dt(_dig(metadata, "data", "end"), "data.end"),
        "data_content_hash": str(_dig(metadata, "data", "content_hash") or "")[:64],
        "out_of_sample_from": windows["first_unseen_at"] or declared,
        "allow_short_history": bool(metadata.get("allow_short_history", False)),
        **windows,
    }


def metadata_windows(metadata: dict[str, Any], interval: str) -> dict[str, datetime | None]:
    """The version's fit, selection and first-unseen columns; unreadable dates are refused."""
    try:
        return version_windows(metadata, interval)
    except WindowError as exc:
        raise ArtifactError(f"metadata windows: {exc}") from exc


def _advisory_lock(name: str) -> None:
    """Serialise writers on one key until commit (PostgreSQL; SQLite writers are serial)."""
    if connection.vendor == "postgresql":
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _stage_files(artifacts: ArtifactSet, metadata: dict[str, Any]) -> Path:
    root = artifact_store_root()
    root.mkdir(parents=True, exist_ok=True)
    staged = root / f".incoming-{uuid.uuid4().hex}"
    staged.mkdir()
    try:
        _copy_artifacts(artifacts, metadata, staged)
    except (UnsafeInput, OSError) as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise ArtifactError(str(exc)) from exc
    if sha256_of(staged / artifacts.onnx_path.name) != metadata["onnx_sha256"]:
        shutil.rmtree(staged, ignore_errors=True)
        raise ArtifactError("the ONNX file changed while it was being copied into the store.")
    return staged


def _copy_artifacts(artifacts: ArtifactSet, metadata: dict[str, Any], staged: Path) -> None:
    """Copy without following links or blocking on FIFOs, each file within its size cap."""
    copy_regular(artifacts.onnx_path, staged / artifacts.onnx_path.name, kind="onnx")
    (staged / artifacts.metadata_path.name).write_text(
        json.dumps(metadata, indent=2, sort_keys=True)
    )
    if artifacts.plot_path:
        copy_regular(artifacts.plot_path, staged / artifacts.plot_path.name, kind="plot")
    trials_plot = search_plot_name(metadata)
    if trials_plot and (artifacts.onnx_path.parent / trials_plot).is_file():
        # A searched version's trials plot travels with it (optional, like the training plot).
        copy_regular(artifacts.onnx_path.parent / trials_plot, staged / trials_plot, kind="plot")


def _repair_of(metadata: dict[str, Any]) -> dict[str, Any]:
    data = metadata.get("data")
    repair = data.get("repair") if isinstance(data, dict) else None
    return {"data_repair": repair} if repair else {}


def search_plot_name(metadata: dict[str, Any] | None) -> str | None:
    """The trials plot a searched version's metadata names: a bare *.png name, else None."""
    search = (metadata or {}).get("search")
    name = search.get("plot") if isinstance(search, dict) else None
    if not isinstance(name, str) or not name.endswith(".png"):
        return None
    try:  # never a path: the name comes from an uploaded file's metadata
        return name if safe_name(name[: -len(".png")], suffix=".png") == name else None
    except UnsafeInput:
        return None


def _publish(staged: Path, final_dir: Path) -> None:
    if final_dir.exists():
        if ModelVersion.objects.filter(onnx_sha256=final_dir.name).exists():
            raise ArtifactError(f"the artifact store already holds {final_dir.name}.")
        # Left by a publish whose transaction then rolled back: no version owns it.
        shutil.rmtree(final_dir)
    for path in staged.iterdir():
        path.chmod(0o444)
    staged.rename(final_dir)


def _dig(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _dt(value: Any, field: str) -> datetime | None:
    """A metadata timestamp; an unreadable one is refused, never silently dropped.

    ``out_of_sample_from`` guards the validation gate: dropping a malformed one
    would let an in-sample backtest count as out-of-sample.
    """
    if value is None or value == "":
        return None
    try:
        parsed = parse_datetime(str(value).replace(" ", "T"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise ArtifactError(f"metadata field {field}: {value!r} is not a date and time.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _metrics_from(metadata: dict[str, Any]) -> dict[str, Any]:
    """Training figures flattened for lists and comparisons: ``test_directional_accuracy``..."""
    flat: dict[str, Any] = {}
    metrics = metadata.get("metrics")
    for split, values in metrics.items() if isinstance(metrics, dict) else []:
        if isinstance(values, dict):
            flat.update({f"{split}_{key}": value for key, value in values.items()})
        else:
            flat[split] = values
    parity = metadata.get("parity")
    if isinstance(parity, dict) and "max_abs_diff" in parity:
        flat["onnx_parity_max_abs_diff"] = parity["max_abs_diff"]
    return flat
