"""One concern: training a model from the data store and registering the result.

Training a model from the data store and registering it: shared by the command, task and admin.

A run reads candles (and sentiment) from the store, repairs gaps only when the
caller's policy says so, trains into a private temporary folder, and then
either registers the artifacts as a new ``trained`` version or publishes them
into a folder of the caller's choice. The temporary folder is removed in every
outcome, so a failed or refused run leaves no version and no files. The guide
forbids training in production: every entry point calls
``refuse_training_in_production`` first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
from django.conf import settings
from django.contrib.auth.models import User

from engine.data import (
    DataError,
    ValidationPolicy,
    apply_candle_policy,
    interval_timedelta,
    read_candles,
    read_sentiment,
    stored_candle_range,
)
from engine.data.errors import StoreEmptyError
from engine.inference import artifact_names
from engine.training import TrainingConfig, TrainingError, TrainingResult, train_model
from engine.training.config import EpochCallback
from engine.training.metadata import write_json_atomic
from engine.training.publish import StagingDir
from engine.training.search import TrialCallback
from models_registry.gates import validation_policy_for
from models_registry.market_conditions import (
    MarketConditionsError,
    check_override_reason,
    market_conditions_policy,
)
from models_registry.models import ModelVersion, RegistryError
from models_registry.services.model_versions import (
    ArtifactError,
    market_conditions_gate,
    model_version_create,
    version_dir,
)
from models_registry.services.paper import DEFAULT_DAYS as PAPER_DEFAULT_DAYS
from models_registry.services.provenance import ProvenanceMissing, refuse_anonymous
from models_registry.services.temp_sweep import owner_mark

logger = logging.getLogger(__name__)

GAP_POLICIES = ("refuse", "ffill")
# ffill repairs short outages only (the real data has one missing hour); a longer
# hole is a data problem to fix in the store, not something to paper over.
DEFAULT_MAX_FILL = 3
TEMP_PREFIX = "tradebot-training-"


class TrainingRefused(RegistryError):
    """Training was refused or failed; the message says why. No version, no files were left."""


@dataclass(frozen=True)
class TrainingOptions:
    """What a caller may choose. None means the engine's default (TrainingConfig)."""

    interval: str = "1h"
    start: str | None = None
    end: str | None = None
    epochs: int | None = None
    window: int | None = None
    units: int | None = None
    seed: int | None = None
    horizon: int | None = None
    objective: str | None = None
    entry: float | None = None
    exit: float | None = None
    min_hold: int | None = None
    # Optuna trials (train_model --search N); None trains once with the defaults.
    search: int | None = None
    force_price_only: bool = False
    allow_short_history: bool = False
    # A written reason to register a version whose training data lacks a market condition.
    allow_missing_conditions: str | None = None
    gap_policy: str = "refuse"
    max_fill: int = DEFAULT_MAX_FILL
    data_dir: str | None = None
    # Without ``end``: days at the end of the store kept unseen for the policy validation and
    # the paper run after it. None: the validation policy's days plus the paper run's.
    hold_out_days: float | None = None

    @property
    def store_dir(self) -> Path:
        return Path(self.data_dir or settings.TRADEBOT_DATA_DIR)


@dataclass(frozen=True)
class TrainingData:
    candles: pd.DataFrame
    sentiment: pd.Series | None
    store_content_hash: str
    # What the gap policy changed, or None when the candles are as stored.
    repair: dict[str, Any] | None
    # The newest bars kept out of training by default, or None (an explicit end, or 0 days).
    held_out: dict[str, Any] | None = None


@dataclass(frozen=True)
class TrainingArtifacts:
    """Where a run's three files ended up, with the engine's summary of the run."""

    onnx_path: Path
    metadata_path: Path
    plot_path: Path
    metadata: dict[str, Any]

    @property
    def paths(self) -> dict[str, str]:
        return {
            "onnx": str(self.onnx_path),
            "metadata": str(self.metadata_path),
            "plot": str(self.plot_path),
        }


def refuse_training_in_production() -> None:
    """The guide: never train in production. Raises TrainingRefused there."""
    if settings.ENVIRONMENT == "production":
        raise TrainingRefused(
            "refusing to train: ENVIRONMENT is 'production', and the deployment guide says "
            "never to train in production (it competes with live trading for CPU and memory, "
            "and an untested model must not appear there). Train on a development or "
            "training host, then validate, approve and deploy the version."
        )


def training_options_parse(options: dict[str, Any]) -> TrainingOptions:
    """Check a caller's options (command, task, admin form) and name the first bad one."""
    known = {f.name for f in fields(TrainingOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TrainingRefused(f"unknown training option(s) {unknown}; known: {sorted(known)}")
    values = {key: value for key, value in options.items() if value is not None}
    parsed = TrainingOptions(**values)
    _check_option_values(parsed)
    return parsed


def _check_option_values(options: TrainingOptions) -> None:
    for name in ("force_price_only", "allow_short_history"):
        if not isinstance(getattr(options, name), bool):
            raise TrainingRefused(f"{name} must be true or false, not {getattr(options, name)!r}")
    try:
        interval_timedelta(options.interval)
    except ValueError as exc:
        raise TrainingRefused(f"interval: {exc}") from exc
    try:
        check_override_reason(options.allow_missing_conditions)
    except MarketConditionsError as exc:
        raise TrainingRefused(str(exc)) from exc
    if options.gap_policy not in GAP_POLICIES:
        raise TrainingRefused(
            f"gap_policy must be one of {', '.join(GAP_POLICIES)}, not {options.gap_policy!r}"
        )
    if (
        not isinstance(options.max_fill, int)
        or isinstance(options.max_fill, bool)
        or options.max_fill < 1
    ):
        raise TrainingRefused(
            f"max_fill must be a positive number of bars, not {options.max_fill!r}"
        )
    if options.search is not None and (
        isinstance(options.search, bool)
        or not isinstance(options.search, int)
        or options.search < 1
    ):
        raise TrainingRefused(
            f"--search must be a positive number of trials, not {options.search!r}"
        )
    start, end = _timestamp("start", options.start), _timestamp("end", options.end)
    if start is not None and end is not None and start >= end:
        raise TrainingRefused(f"start ({start}) must be before end ({end})")
    days = options.hold_out_days
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int | float) or not 0 <= days < 10_000
    ):
        raise TrainingRefused(f"--hold-out-days must be a number of days >= 0, not {days!r}")


def _timestamp(name: str, value: str | None) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise TrainingRefused(f"{name}: {value!r} is not a date or time ({exc})") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def training_config_build(*, symbol: str, options: TrainingOptions) -> TrainingConfig:
    try:
        conditions = market_conditions_policy()
    except MarketConditionsError as exc:
        raise TrainingRefused(str(exc)) from exc
    overrides = {
        name: getattr(options, name)
        for name in (
            "epochs",
            "window",
            "units",
            "seed",
            "horizon",
            "objective",
            "entry",
            "exit",
            "min_hold",
        )
        if getattr(options, name) is not None
    }
    try:
        config = TrainingConfig(
            symbol=symbol,
            interval=options.interval,
            force_price_only=options.force_price_only,
            allow_short_history=options.allow_short_history,
            # Measured with the registry's policy, so the gate judges what was measured.
            condition_window_days=int(conditions["window_days"]),
            condition_threshold=float(conditions["threshold"]),
            **overrides,
        )
    except ValueError as exc:
        raise TrainingRefused(str(exc)) from exc  # TrainingConfig names the bad option
    return config


def training_data_load(*, symbol: str, options: TrainingOptions) -> TrainingData:
    """Candles (and sentiment unless price-only) from the store, gaps handled by the policy.

    Without an explicit ``end`` the newest ``hold_out_days`` stay out of training, so the
    version has a policy validation window and a paper window in the data it was trained
    from: a first ``train_model BTCUSDT`` can be validated at once.
    """
    held_out = None if options.end is not None else default_hold_out(symbol, options)
    end = options.end if held_out is None else held_out["from"]
    try:
        read = read_candles(
            options.store_dir, symbol, options.interval, start=options.start, end=end
        )
    except (DataError, ValueError) as exc:
        raise TrainingRefused(str(exc)) from exc
    if read.frame.empty:
        if held_out is not None:
            raise TrainingRefused(
                f"holding out the newest {held_out['days']:g} days ({held_out['why']}) leaves no "
                f"{symbol} {options.interval} candles to train on in {options.store_dir}; "
                "pass --end, or --hold-out-days 0 to train on every stored bar"
            )
        raise TrainingRefused(
            f"no {symbol} {options.interval} candles in {options.store_dir} "
            f"between {options.start or 'the first'} and {options.end or 'the last'} stored bar"
        )
    candles, repair = _apply_gap_policy(read.frame, symbol, options)
    sentiment = None if options.force_price_only else _stored_sentiment(options.store_dir)
    return TrainingData(candles, sentiment, read.content_hash, repair, held_out)


def default_hold_out(symbol: str, options: TrainingOptions) -> dict[str, Any] | None:
    """The newest days kept unseen: [from, end of store). None when nothing is held out."""
    days, why = _hold_out_days(symbol, options)
    if days <= 0:
        return None
    stored = stored_candle_range(options.store_dir, symbol, options.interval)
    if stored is None:
        return None  # read_candles names the empty store
    stop = stored[1] + interval_timedelta(options.interval)
    start = stop - pd.Timedelta(days=days)
    return {"from": start.isoformat(), "until": stop.isoformat(), "days": days, "why": why}


def stored_symbols(data_dir: Path | None = None, interval: str = "1h") -> list[str]:
    """The symbols with candles of ``interval`` in the store, sorted: what a form offers."""
    root = Path(data_dir or settings.TRADEBOT_DATA_DIR) / "candles"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / f"{interval}.parquet").is_file())


def training_data_check(symbol: str, options: dict[str, Any]) -> None:
    """Refuse before queueing when the store cannot feed this training: one line, no path.

    The same rule the engine applies later (six months, ``MIN_HISTORY_DAYS``), on the store's
    range after the default hold-out, so a person learns now rather than from a failed job.
    """
    from engine.training.config import MIN_HISTORY_DAYS

    parsed = training_options_parse(options)
    stored = stored_candle_range(parsed.store_dir, symbol, parsed.interval)
    if stored is None:
        known = ", ".join(stored_symbols(parsed.store_dir, parsed.interval)) or "none yet"
        raise TrainingRefused(
            f"no {symbol} {parsed.interval} candles in the data store (stored: {known}); "
            "import or fetch them first."
        )
    first, last = stored
    start = max(first, pd.Timestamp(parsed.start, tz="UTC")) if parsed.start else first
    if parsed.end:
        end = min(last, pd.Timestamp(parsed.end, tz="UTC"))
    else:
        held = default_hold_out(symbol, parsed)
        end = pd.Timestamp(held["from"]) if held else last
    days = max((end - start).total_seconds() / 86400, 0.0)
    if days < MIN_HISTORY_DAYS and not parsed.allow_short_history:
        stored_days = (last - first).total_seconds() / 86400
        raise TrainingRefused(
            f"{symbol} has {stored_days:.0f} days of {parsed.interval} candles stored "
            f"({first:%Y-%m-%d} to {last:%Y-%m-%d}), {days:.0f} of them to train on in the "
            f"chosen window with the newest days kept unseen; training needs at least "
            f"{MIN_HISTORY_DAYS}."
        )


def _hold_out_days(symbol: str, options: TrainingOptions) -> tuple[float, str]:
    if options.hold_out_days is not None:
        return float(options.hold_out_days), "--hold-out-days"
    # The model's name follows its kind, known only after training: hold out for the
    # longer of the two names' policies, so either name's policy window is unseen.
    names = [f"{symbol.lower()}_price"]
    if not options.force_price_only:
        names.append(f"{symbol.lower()}_sentiment")
    validation_days = max(float(validation_policy_for(name)["days"]) for name in names)
    paper_days = float(PAPER_DEFAULT_DAYS)
    return (
        validation_days + paper_days,
        f"the validation policy's {validation_days:g} days and a {paper_days:g}-day paper run",
    )


def _apply_gap_policy(
    frame: pd.DataFrame, symbol: str, options: TrainingOptions
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    source = f"{symbol} {options.interval} candles in {options.store_dir}"
    if options.gap_policy == "refuse":
        policy = ValidationPolicy(bad_rows="refuse", gaps="refuse")
    else:
        policy = ValidationPolicy(bad_rows="refuse", gaps="fill", max_fill=options.max_fill)
    try:
        clean, report = apply_candle_policy(frame, options.interval, policy, source=source)
    except DataError as exc:
        hint = (
            " Repair the store (import_klines --on-gaps fill) or train with --gap-policy ffill."
            if options.gap_policy == "refuse"
            else ""
        )
        raise TrainingRefused(f"{exc}.{hint}") from exc
    if not report.filled_rows:
        return clean, None
    gaps = report.issues["gaps"]
    return clean, {
        "policy": "ffill",
        "max_fill": options.max_fill,
        "filled_rows": report.filled_rows,
        "gaps": gaps.count,
        "first_gaps_at": gaps.first,
    }


def _stored_sentiment(store_dir: Path) -> pd.Series | None:
    # No sentiment stored is not an error: the engine falls back to price-only and says why.
    try:
        return read_sentiment(store_dir).frame
    except StoreEmptyError:
        return None
    except DataError as exc:
        raise TrainingRefused(str(exc)) from exc


def training_artifacts_build(
    *,
    symbol: str,
    options: dict[str, Any],
    output_dir: Path,
    on_epoch: EpochCallback | None = None,
    on_trial: TrialCallback | None = None,
) -> TrainingArtifacts:
    """Train and publish the three artifacts into ``output_dir``, without the registry."""
    refuse_training_in_production()
    with _work_folder() as work:
        model_dir = _train_into(work, symbol, options, on_epoch, on_trial)
        return _publish_copy(model_dir, Path(output_dir))


def training_run(
    *,
    symbol: str,
    options: dict[str, Any],
    requested_by: User | None,
    origin_key: str | None = None,
    on_epoch: EpochCallback | None = None,
    output_dir: Path | None = None,
    on_trial: TrialCallback | None = None,
) -> ModelVersion:
    """Train and register a ``trained`` version; with ``output_dir``, also leave a copy there.

    Idempotent on ``origin_key`` (a task id): when a version with that key
    exists, it is returned without training again.
    """
    refuse_training_in_production()
    try:
        refuse_anonymous(requested_by, what="training a model")
    except ProvenanceMissing as exc:
        raise TrainingRefused(str(exc)) from exc
    if origin_key:
        existing = ModelVersion.objects.filter(origin_key=origin_key).first()
        if existing is not None:
            logger.info("training %s already produced %s; not training again", origin_key, existing)
            return existing
    with _work_folder() as work:
        model_dir = _train_into(work, symbol, options, on_epoch, on_trial)
        try:
            # The training gate: refused here, the work folder goes and nothing is stored.
            override = market_conditions_gate(
                _read_metadata(model_dir), options.get("allow_missing_conditions")
            )
            version = model_version_create(
                source_dir=model_dir,
                created_by=requested_by,
                origin_key=origin_key,
                conditions_override=override,
            )
        except ArtifactError as exc:
            raise TrainingRefused(f"the trained artifacts could not be registered: {exc}") from exc
    if output_dir is not None:
        _copy_registered_files(version, Path(output_dir))
    return version


def registered_artifacts(version: ModelVersion) -> TrainingArtifacts:
    folder = version_dir(version)
    return TrainingArtifacts(
        onnx_path=folder / version.onnx_file,
        metadata_path=folder / version.metadata_file,
        plot_path=folder / version.plot_file,
        metadata=version.metadata,
    )


@contextlib.contextmanager
def _work_folder() -> Iterator[Path]:
    """A private temporary folder, removed whatever happens inside the block."""
    path = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    try:
        owner_mark(path)  # so a sweep after a killed worker knows whether it is still held
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _train_into(
    work: Path,
    symbol: str,
    raw_options: dict[str, Any],
    on_epoch: EpochCallback | None,
    on_trial: TrialCallback | None = None,
) -> Path:
    options = training_options_parse(raw_options)
    config = training_config_build(symbol=symbol, options=options)
    data = training_data_load(symbol=symbol, options=options)
    model_dir = work / "model"
    content_hash = None if data.repair else data.store_content_hash
    try:
        if options.search is not None:
            from engine.training.search import search_and_train

            result = search_and_train(
                data.candles, data.sentiment, config, model_dir, options.search,
                on_epoch=on_epoch, on_trial=on_trial, data_content_hash=content_hash,
            )  # fmt: skip
        else:
            result = train_model(
                data.candles,
                data.sentiment,
                config,
                model_dir,
                on_epoch,
                data_content_hash=content_hash,
            )
    except TrainingError as exc:
        raise TrainingRefused(str(exc)) from exc
    if data.repair:
        _record_repair(result, data)
    if data.held_out:
        _record_hold_out(result, data.held_out)
    return model_dir


def _record_hold_out(result: TrainingResult, held_out: dict[str, Any]) -> None:
    """Which newest bars the default kept unseen, in the metadata (onnx_sha256 unaffected)."""
    metadata = json.loads(result.metadata_path.read_text())
    metadata["data"] = {**metadata["data"], "held_out": held_out}
    write_json_atomic(result.metadata_path, metadata)


def _record_repair(result: TrainingResult, data: TrainingData) -> None:
    """Nothing is filled silently: the repair goes into the metadata and its warnings.

    Safe after the engine wrote the file: onnx_sha256 covers the ONNX file only.
    """
    repair = data.repair or {}
    message = (
        f"{repair['filled_rows']} missing candle(s) in {repair['gaps']} gap(s) "
        f"(first at {', '.join(repair['first_gaps_at'])}) were forward-filled "
        "by the ffill gap policy"
    )
    logger.warning(message)
    metadata = dict(result.metadata)
    metadata["data"] = {
        **metadata["data"],
        "repair": repair,
        "store_content_hash": data.store_content_hash,
    }
    metadata["warnings"] = [*metadata.get("warnings", []), message]
    write_json_atomic(result.metadata_path, metadata)


def _publish_copy(model_dir: Path, output_dir: Path) -> TrainingArtifacts:
    """Copy the three files into ``output_dir`` and publish them there in one step."""
    metadata = _read_metadata(model_dir)
    names = artifact_names(metadata["symbol"], metadata["kind"])
    order = [names.plot, names.onnx, names.metadata]
    search_plot = (metadata.get("search") or {}).get("plot")
    if search_plot and (model_dir / search_plot).is_file():
        order.insert(0, search_plot)
    with StagingDir(output_dir) as staging:
        for name in order:
            shutil.copyfile(model_dir / name, staging.path / name)
        staging.publish(order)
    published = Path(output_dir).resolve()
    return TrainingArtifacts(
        onnx_path=published / names.onnx,
        metadata_path=published / names.metadata,
        plot_path=published / names.plot,
        metadata=metadata,
    )


def _copy_registered_files(version: ModelVersion, output_dir: Path) -> None:
    try:
        _publish_copy(version_dir(version), output_dir)
    except OSError as exc:
        raise TrainingRefused(
            f"{version} was registered, but its copy could not be written to {output_dir}: {exc}"
        ) from exc


def _read_metadata(model_dir: Path) -> dict[str, Any]:
    metadata_files = sorted(model_dir.glob("*_metadata.json"))
    if len(metadata_files) != 1:
        raise TrainingRefused(f"{model_dir} should hold one metadata file, found {metadata_files}")
    return json.loads(metadata_files[0].read_text())
