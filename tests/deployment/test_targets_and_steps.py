"""Target validation, layouts, and the parsing and version-keeping steps (local, no SSH)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deployment import steps
from deployment.connection import LocalConnection
from deployment.targets import ArtifactSpec, HostSpec, TargetConfigError, TargetSpec
from tests.support.budgets import budget


def test_defaults_follow_the_deployment_guide(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    target = TargetSpec(
        name="prod", hosts=[HostSpec("10.0.0.5")], known_hosts_path=str(known_hosts)
    )
    layout = target.layout_for(target.hosts[0])

    assert layout.model_dir == "/opt/ai-trading-bot/src/ml"
    assert layout.upload_dir == "/tmp/ai-trading-bot-staging"
    assert layout.status_file == "/opt/ai-trading-bot/var/status.json"
    assert layout.restart_command == "sudo systemctl restart ai-trading-bot"
    assert layout.log_command("2026-11-26 10:00:00") == (
        "sudo journalctl -u ai-trading-bot --since '2026-11-26 10:00:00' --no-pager"
    )
    assert layout.check_command(candidate_dir="/x", name="m") is None


def test_host_overrides_change_only_that_host(tmp_path):
    target = TargetSpec(
        name="t",
        local=True,
        hosts=[HostSpec("a", install_root="/srv/a"), HostSpec("b")],
        check_command="{install_root}/venv/bin/python -m engine.live --model-dir {candidate_dir}",
    )
    first, second = (target.layout_for(host) for host in target.hosts)
    assert first.model_dir == "/srv/a/src/ml"
    assert second.model_dir == "/opt/ai-trading-bot/src/ml"
    assert first.check_command(candidate_dir="/up/1", name="m") == (
        "/srv/a/venv/bin/python -m engine.live --model-dir /up/1"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"hosts": []}, "no hosts"),
        ({"known_hosts_text": None}, "pinned known_hosts"),
        ({"known_hosts_path": "/nonexistent/known_hosts", "known_hosts_text": None}, "not a file"),
        ({"environment": "qa"}, "environment 'qa'"),
        ({"health_timeout": 0}, "health_timeout must be positive"),
        ({"hosts": [HostSpec("a"), HostSpec("a")]}, "duplicate hosts"),
        ({"parallelism": 0}, "parallelism"),
    ],
)
def test_invalid_targets_name_the_problem(settings, message):
    values = {"name": "bad", "hosts": [HostSpec("a")], "known_hosts_text": ""}
    values.update(settings)
    with pytest.raises(TargetConfigError, match=message):
        TargetSpec(**values)


def test_artifact_rejects_unsafe_names_and_bad_digests(tmp_path):
    with pytest.raises(TargetConfigError, match="name 'a b;rm'"):
        ArtifactSpec("a b;rm", 1, tmp_path / "x", tmp_path / "y", "0" * 64, "0" * 64)
    with pytest.raises(TargetConfigError, match="onnx_sha256 is not 64"):
        ArtifactSpec("m", 1, tmp_path / "x", tmp_path / "y", "ABC", "0" * 64)


def test_deployment_ids_that_could_escape_the_upload_folder_are_refused():
    for bad in ("../etc", "a/b", "", "x y"):
        with pytest.raises(ValueError, match="deployment id"):
            steps.check_deployment_id(bad)


def test_sections_round_trip_through_a_real_shell():
    connection = LocalConnection()
    sections = steps.run_sections(
        connection,
        {"one": "printf 'no newline'", "missing": "cat /nonexistent", "two": "echo a; echo b"},
        what="test",
    )
    assert sections == {"one": "no newline", "missing": "", "two": "a\nb"}


def test_failing_prelude_fails_the_step(tmp_path):
    with pytest.raises(steps.StepFailed, match="preflight"):
        steps.run_sections(
            LocalConnection(), {"x": "echo x"}, what="preflight", prelude="test -d /nonexistent"
        )


def local_layout(root: Path):
    host = HostSpec("h", install_root=str(root), upload_dir=str(root / "up"))
    return TargetSpec(name="t", local=True, hosts=[host]).layout_for(host)


def test_preflight_refuses_a_missing_model_dir(tmp_path):
    layout = local_layout(tmp_path)
    with pytest.raises(steps.StepFailed, match=r"model directory .* missing"):
        steps.preflight(LocalConnection(), layout, name="m", needed_bytes=0, min_free_bytes=0)


def test_preflight_refuses_when_disk_is_short(tmp_path):
    (tmp_path / "src" / "ml").mkdir(parents=True)
    layout = local_layout(tmp_path)
    with pytest.raises(steps.StepFailed, match="bytes free on the host"):
        steps.preflight(LocalConnection(), layout, name="m", needed_bytes=1 << 60, min_free_bytes=0)


def test_prune_keeps_the_newest_and_the_protected_versions(tmp_path):
    target = TargetSpec(name="t", local=True, hosts=[HostSpec("h", install_root=str(tmp_path))])
    layout = target.layout_for(target.hosts[0])
    versions = Path(layout.versions_dir)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5)]
    now = time.time()
    for age, sha in enumerate(shas):  # shas[0] newest ... shas[4] oldest
        (versions / sha).mkdir(parents=True)
        os.utime(versions / sha, (now - 100 * age, now - 100 * age))
    (versions / "not-a-version").mkdir()

    script = steps.prune_versions_script(layout, keep=2, protect={shas[4]})
    result = LocalConnection().run(script, timeout=10)

    assert result.ok, result.describe()
    assert sorted(p.name for p in versions.iterdir()) == sorted(
        [shas[0], shas[1], shas[4], "not-a-version"]
    )


def test_local_connection_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = LocalConnection().run(f"sleep 30 & echo $! > {pid_file}; wait", timeout=0.5)

    assert result.timed_out
    assert time.monotonic() - started < 30, "the command was cut off, not waited out"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + budget(3)
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{child}/stat").read_text().split()[2]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the background child of a timed-out command is still running")


def test_engine_status_parsing_treats_a_zombie_as_dead():
    document = '{"pid": 123, "model_sha256": "' + "a" * 64 + '", "state": "running"}'
    alive = steps.parse_engine_status({"status": document, "pid_state": "S"})
    zombie = steps.parse_engine_status({"status": document, "pid_state": "Z"})
    gone = steps.parse_engine_status({"status": document, "pid_state": ""})
    assert alive.alive is True and zombie.alive is False and gone.alive is False
    assert steps.parse_engine_status({"status": "{not json"}).state == "unreadable"


# --------------------------------------------------------------------------- policy costs

SHIPPED = {"fee_bps": 10.0, "slippage_bps": 5.0, "policy_hash": "a" * 64}


@pytest.mark.parametrize(
    ("shipped", "engine", "says"),
    [
        (None, None, None),  # nothing shipped (a hand install): nothing to hold it to
        (SHIPPED, {**SHIPPED, "source": "policy"}, None),
        (SHIPPED, {**SHIPPED, "fee_bps": 10}, None),  # 10 and 10.0 are one cost
        (SHIPPED, None, "does not report"),
        (SHIPPED, "10", "does not report"),
        (SHIPPED, {**SHIPPED, "fee_bps": 20.0}, "fee_bps 20.0 (shipped 10.0)"),
        (SHIPPED, {**SHIPPED, "slippage_bps": 0}, "slippage_bps 0 (shipped 5.0)"),
        (SHIPPED, {**SHIPPED, "fee_bps": True}, "fee_bps True"),
        (SHIPPED, {**SHIPPED, "fee_bps": None}, "fee_bps None"),
        (SHIPPED, {**SHIPPED, "policy_hash": "b" * 64}, "policy bbbbbbbbbbbb (shipped aaaa"),
        ({"unreadable": "{oops"}, SHIPPED, "unreadable"),
        ("a list", SHIPPED, "unreadable"),
    ],
)
def test_costs_problem_names_each_way_an_engine_is_not_at_the_shipped_costs(shipped, engine, says):
    problem = steps.costs_problem(shipped, engine)
    if says is None:
        assert problem is None
    else:
        assert problem is not None and says in problem


def test_an_artifact_costs_file_must_be_whole_lines(tmp_path):
    onnx, metadata = tmp_path / "m.onnx", tmp_path / "m_metadata.json"
    onnx.write_bytes(b"x")
    metadata.write_text("{}")
    artifact = ArtifactSpec.from_files(name="m", version=1, onnx_path=onnx, metadata_path=metadata)
    assert artifact.costs_sha256 is None
    with pytest.raises(TargetConfigError, match="costs_json must end with a newline"):
        ArtifactSpec(**{**artifact.__dict__, "costs_json": '{"fee_bps": 10}'})
    shipped = ArtifactSpec(**{**artifact.__dict__, "costs_json": '{"fee_bps": 10}\n'})
    assert shipped.costs_sha256 == hashlib.sha256(b'{"fee_bps": 10}\n').hexdigest()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(label=st.text(max_size=60), scope=st.text(max_size=20))
@example(label="it's $(touch pwned) `id` %s %% \\n \\ -e\n", scope="'; rm -rf / #")
@example(label="\u00e9\u4e2d\U0001f600\x00", scope="")
def test_any_policy_label_reaches_the_host_byte_for_byte_and_reads_back(tmp_path, label, scope):
    """The label and scope are people's text: quotes, $( ), backslashes, newlines, any script.
    The costs file is written on the host through a shell argument; it must arrive exactly,
    pass the sha256 verify, and be what the engine reads."""
    from engine.live.config import parse_costs_document
    from models_registry.services.deployments import costs_file_text

    document = {
        "model_name": "m", "fee_bps": 10.0, "slippage_bps": 5.0, "policy_id": 1,
        "policy_number": 1, "policy_label": label, "policy_scope": scope,
        "policy_hash": "c" * 64,
    }  # fmt: skip
    folder = tmp_path / f"case-{abs(hash((label, scope)))}"
    folder.mkdir()
    onnx, metadata = folder / "m.onnx", folder / "m_metadata.json"
    onnx.write_bytes(b"onnx")
    metadata.write_text("{}")
    artifact = ArtifactSpec(
        **{
            **ArtifactSpec.from_files(
                name="m", version=1, onnx_path=onnx, metadata_path=metadata
            ).__dict__,
            "costs_json": costs_file_text(document),
        }
    )
    target = TargetSpec(
        name="t",
        hosts=[HostSpec("localhost")],
        local=True,
        install_root=str(folder / "root"),
        upload_dir=str(folder / "up"),
    )
    layout = target.layout_for(target.hosts[0], "m")
    connection = LocalConnection()

    candidate = steps.upload(connection, layout, artifact, deployment_id="d1", timeout=budget(10))
    steps.verify_upload(connection, artifact, candidate)

    shipped = (Path(candidate) / "m_costs.json").read_bytes()
    assert shipped == artifact.costs_json.encode()
    read = parse_costs_document(shipped, where="costs file", model_name="m")
    assert (read.policy_label, read.policy_scope) == (label, scope)
