# ruff: noqa: F811 - the fixtures are imported from tests.registry.conftest
"""Issue 26 finding 1, the spelling side: a host is the machine, not how it is written.

Generated spellings (Hypothesis) of one address and one install root normalise to one
identity, and the registry refuses a second host (of any target) spelled another way,
at creation. What spelling cannot know (another port of one sshd, a symlinked root, a
local and an SSH target on one folder) is the preflight's job: see
test_registry_host_safety.py. The machine lock is checked here on its own.
"""

from __future__ import annotations

import ipaddress
import posixpath
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployment.identity import (
    LOOPBACK,
    HostClaimRefused,
    HostIdentity,
    canonical_address,
    canonical_root,
    same_place_pairs,
)
from models_registry import roles
from models_registry.models import (
    Deployment,
    DeploymentHost,
    DeploymentStatus,
    DeploymentTarget,
    Environment,
    HostLock,
)
from models_registry.services import host_identity, targets
from tests.registry.conftest import artifact_dir, engineer, make_user  # noqa: F401

# --------------------------------------------------------------------------- generators


def random_case(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda flags: "".join(c.upper() if up else c for c, up in zip(text, flags, strict=True))
    )


def with_trailing_dot(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(strategy, st.booleans()).map(lambda pair: pair[0] + ("." if pair[1] else ""))


def ipv6_forms(ip: ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    """One IPv6 address written compressed, exploded, upper case, bracketed."""
    spelled = st.sampled_from([ip.compressed, ip.exploded]).flatmap(random_case)
    return st.tuples(spelled, st.booleans()).map(lambda p: f"[{p[0]}]" if p[1] else p[0])


loopback_v4 = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)).map(
    lambda t: f"127.{t[0]}.{t[1]}.{t[2]}"
)
loopback_spellings = st.one_of(
    loopback_v4,
    with_trailing_dot(st.sampled_from(["localhost", "localhost.localdomain"]).flatmap(random_case)),
    ipv6_forms(ipaddress.IPv6Address("::1")),
    loopback_v4.flatmap(lambda v4: ipv6_forms(ipaddress.IPv6Address(f"::ffff:{v4}"))),
)
public_v4 = st.ip_addresses(v=4).filter(
    lambda ip: not (ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved)
)


def v4_spellings(ip: ipaddress.IPv4Address) -> st.SearchStrategy[str]:
    return st.one_of(st.just(str(ip)), ipv6_forms(ipaddress.IPv6Address(f"::ffff:{ip}")))


public_v6 = st.ip_addresses(v=6).filter(
    lambda ip: not (ip.is_loopback or ip.ipv4_mapped or ip.sixtofour or ip.is_unspecified)
)
hostnames = (
    st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
        min_size=1,
        max_size=4,
    )
    .map(".".join)
    .filter(lambda name: not name.replace(".", "").isdigit())
)
segments = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8),
    min_size=1,
    max_size=5,
)


@st.composite
def root_spellings(draw: Any, parts: list[str]) -> str:
    """`/a/b/c` written with `.` segments, `x/..` detours, doubled and trailing slashes."""
    written: list[str] = []
    for part in parts:
        for _ in range(draw(st.integers(0, 2))):
            choice = draw(st.sampled_from([".", "detour"]))
            written.extend(["."] if choice == "." else [draw(segments)[0], ".."])
        written.append(part)
    slashes = [draw(st.sampled_from(["/", "//", "///"])) for _ in written]
    text = "".join(slash + part for slash, part in zip(slashes, written, strict=True))
    return text + draw(st.sampled_from(["", "/", "//", "/."]))


# --------------------------------------------------------------------------- pure


@given(loopback_spellings)
def test_every_loopback_spelling_is_this_machine(address: str) -> None:
    assert canonical_address(address) == LOOPBACK


@given(public_v4.flatmap(lambda ip: st.tuples(st.just(ip), v4_spellings(ip))))
def test_an_ipv4_address_and_its_ipv6_mapped_forms_are_one_machine(pair: Any) -> None:
    ip, spelled = pair
    assert canonical_address(spelled) == str(ip)


@given(public_v6.flatmap(lambda ip: st.tuples(st.just(ip), ipv6_forms(ip))))
def test_every_form_of_an_ipv6_address_is_one_machine(pair: Any) -> None:
    ip, spelled = pair
    assert canonical_address(spelled) == ip.compressed


@given(
    hostnames.flatmap(lambda name: st.tuples(st.just(name), with_trailing_dot(random_case(name))))
)
def test_a_name_in_any_letter_case_with_or_without_its_trailing_dot_is_one_name(pair: Any) -> None:
    name, spelled = pair
    assert canonical_address(spelled) == name


@given(segments.flatmap(lambda parts: st.tuples(st.just(parts), root_spellings(parts))))
def test_every_spelling_of_an_install_root_is_one_root(pair: Any) -> None:
    parts, spelled = pair
    assert canonical_root(spelled) == "/" + "/".join(parts), spelled


def test_distinct_roots_and_machines_stay_distinct() -> None:
    assert canonical_root("/opt/a") != canonical_root("/opt/b")
    assert canonical_root("/opt/a/..") == "/opt"
    assert canonical_address("10.0.0.5") != canonical_address("10.0.0.6")
    assert canonical_address("::ffff:10.0.0.5") == "10.0.0.5"
    a = HostIdentity("SHA256:x", "/opt/bot", "id-1")
    assert same_place_pairs({"a": a, "b": HostIdentity("SHA256:x", "/opt/bot", "")}) == [("a", "b")]
    assert same_place_pairs({"a": a, "b": HostIdentity("SHA256:y", "/srv/bot", "id-1")}) == [
        ("a", "b")
    ]
    assert same_place_pairs({"a": a, "b": HostIdentity("SHA256:x", "/srv/bot", "id-2")}) == []


# --------------------------------------------------------------------------- the registry


@pytest.fixture
def production_host(db: None) -> Any:
    """A production target with hosts written plainly; returns a deployer."""
    deployer = make_user("dora_deployer", roles.DEPLOYER)
    production = DeploymentTarget.objects.create(name="prod", environment=Environment.PRODUCTION)
    DeploymentHost.objects.create(
        target=production, hostname="127.0.0.1", port=2222, install_root="/opt/ai-trading-bot"
    )
    DeploymentHost.objects.create(target=production, hostname="10.0.0.5", install_root="/srv/bot")
    DeploymentHost.objects.create(target=production, hostname="2001:db8::5")
    DeploymentHost.objects.create(target=production, hostname="bot.example.test")
    DeploymentTarget.objects.create(name="staging", environment=Environment.STAGING)
    return deployer


def refused(target: DeploymentTarget, deployer: Any, **fields: Any) -> str:
    before = DeploymentHost.objects.count()
    with pytest.raises(targets.TargetChangeRefused, match="prod") as caught:
        targets.host_save(host=DeploymentHost(target=target, **fields), actor=deployer)
    assert DeploymentHost.objects.count() == before, "a refused host is not saved"
    return str(caught.value)


SLOW = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.mark.django_db
@SLOW
@given(
    address=loopback_spellings,
    root=root_spellings(["opt", "ai-trading-bot"]),
)
def test_a_staging_host_written_another_way_is_refused_at_creation(
    production_host: Any, address: str, root: str
) -> None:
    staging = DeploymentTarget.objects.get(name="staging")
    message = refused(
        staging, production_host, hostname=address.strip("[]"), port=2222, install_root=root
    )
    assert "already belongs to target prod (production)" in message


@pytest.mark.django_db
@SLOW
@given(
    spelled=st.one_of(
        v4_spellings(ipaddress.IPv4Address("10.0.0.5")),
        ipv6_forms(ipaddress.IPv6Address("2001:db8::5")),
        with_trailing_dot(random_case("bot.example.test")),
    ),
    root_of_v4=root_spellings(["srv", "bot"]),
)
def test_other_spellings_of_remote_hosts_are_refused_at_creation(
    production_host: Any, spelled: str, root_of_v4: str
) -> None:
    staging = DeploymentTarget.objects.get(name="staging")
    canonical = canonical_address(spelled)
    root = root_of_v4 if canonical == "10.0.0.5" else "/opt/ai-trading-bot//"
    refused(staging, production_host, hostname=spelled.strip("[]"), install_root=root)


@pytest.mark.django_db
def test_another_port_or_another_root_is_another_host(production_host: Any) -> None:
    staging = DeploymentTarget.objects.get(name="staging")
    targets.host_save(
        host=DeploymentHost(target=staging, hostname="127.0.0.1", port=2223), actor=production_host
    )
    targets.host_save(
        host=DeploymentHost(target=staging, hostname="10.0.0.5", install_root="/srv/bot-staging"),
        actor=production_host,
    )
    assert staging.hosts.count() == 2


@pytest.mark.django_db
def test_local_targets_on_one_folder_are_refused_by_real_path(tmp_path: Path) -> None:
    deployer = make_user("dora_deployer", roles.DEPLOYER)
    real = tmp_path / "bot"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    (tmp_path / "other").mkdir()
    targets.target_save(
        target=DeploymentTarget(
            name="demo-prod", environment=Environment.STAGING, is_local=True, install_root=str(real)
        ),
        actor=deployer,
    )
    for spelled in (
        str(tmp_path / "alias"),
        f"{tmp_path}/other/../bot/",
        f"{tmp_path}//./bot",
    ):
        with pytest.raises(targets.TargetChangeRefused, match="demo-prod"):
            targets.target_save(
                target=DeploymentTarget(
                    name="demo-staging",
                    environment=Environment.STAGING,
                    is_local=True,
                    install_root=spelled,
                ),
                actor=deployer,
            )
    assert not DeploymentTarget.objects.filter(name="demo-staging").exists()


# --------------------------------------------------------------------------- the lock


@pytest.mark.django_db
def test_one_deploy_per_machine_whatever_the_targets(people_and_versions: Any) -> None:
    first, second = people_and_versions
    machine = "SHA256:same-machine"
    # two roots on one machine, through two targets: the machine key is one
    one = {"127.0.0.1:2222": HostIdentity(machine, "/opt/a", "id-a")}
    two = {"localhost:2200": HostIdentity(machine, "/opt/b", "id-b")}
    assert "locked" in host_identity.host_claim(first, one)
    with pytest.raises(HostClaimRefused, match=f"being deployed by deployment #{first.pk}"):
        host_identity.host_claim(second, two)
    assert HostLock.objects.filter(deployment=second).count() == 0, "all or nothing"
    jobs_done(first)  # finished: its lock is free, whatever its rows still say
    assert "locked" in host_identity.host_claim(second, two)
    machine_lock = HostLock.objects.get(key=one["127.0.0.1:2222"].machine_key)
    assert machine_lock.deployment_id == second.pk


@pytest.mark.django_db
def test_a_machine_and_root_another_target_deploys_to_is_refused_naming_both(
    people_and_versions: Any,
) -> None:
    first, second = people_and_versions
    place = HostIdentity("SHA256:m", "/opt/bot", "id-1")
    host_identity.host_claim(first, {"127.0.0.1:2222": place})
    jobs_done(first)
    for spelled in (place, HostIdentity("SHA256:other-key", "/elsewhere", "id-1")):
        with pytest.raises(HostClaimRefused) as caught:
            host_identity.host_claim(second, {"localhost:2200": spelled})
        text = str(caught.value)
        assert "target t-one (production)" in text and "target t-two (staging)" in text, text


def jobs_done(deployment: Deployment) -> None:
    from models_registry.services import jobs

    deployment.refresh_from_db()
    if deployment.status == DeploymentStatus.RUNNING:
        jobs.job_transition(
            job=deployment, to=DeploymentStatus.FAILED, event_type="deploy_finished"
        )


@pytest.fixture
def people_and_versions(
    db: None, artifact_dir: Any, engineer: Any, settings: Any, tmp_path: Path
) -> tuple[Deployment, Deployment]:
    settings.MEDIA_ROOT = tmp_path / "media"  # each test its own artifact store
    from models_registry.services.model_versions import model_version_create
    from tests.registry.conftest import finished_deployment

    user = make_user("dora_deployer", roles.DEPLOYER)
    t_one = DeploymentTarget.objects.create(name="t-one", environment=Environment.PRODUCTION)
    t_two = DeploymentTarget.objects.create(name="t-two", environment=Environment.STAGING)
    DeploymentHost.objects.create(target=t_one, hostname="127.0.0.1", port=2222)
    DeploymentHost.objects.create(target=t_two, hostname="localhost", port=2200, install_root="/x")
    version = model_version_create(source_dir=artifact_dir(), created_by=engineer)
    running = {"status": DeploymentStatus.RUNNING, "finished_at": None}
    return (
        finished_deployment(version, t_one, user, **running),
        finished_deployment(version, t_two, user, **running),
    )


def test_root_spelling_generator_really_spells_detours() -> None:
    # the generator must produce `..` and `//`, or the class above is not tested
    assert posixpath.normpath("/opt/x/../ai-trading-bot") == "/opt/ai-trading-bot"


@pytest.mark.django_db
def test_a_name_that_resolves_to_a_production_host_is_refused_at_creation(
    production_host: Any,
) -> None:
    import socket

    from deployment.identity import resolved_addresses

    name = socket.gethostname()
    if not resolved_addresses(name) & resolved_addresses("127.0.0.1"):
        pytest.skip(f"{name} does not resolve to this machine's loopback here")
    staging = DeploymentTarget.objects.get(name="staging")
    message = refused(
        staging,
        production_host,
        hostname=name.upper() + ".",
        port=2222,
        install_root="/opt/ai-trading-bot/",
    )
    assert "resolves to the same machine" in message or "already belongs" in message


def test_the_fleet_home_shows_a_halted_engine_as_a_problem() -> None:
    from types import SimpleNamespace

    from django.utils import timezone

    from models_registry.fleet import host_check_view

    sha = "a" * 64
    check = SimpleNamespace(
        data={
            "registry_sha256": sha,
            "hosts": {"h1": {"matches_registry": True, "live_sha256": sha, "halted": True}},
        },
        event_time=timezone.now(),
        actor_repr="system",
        pk=1,
    )
    view = host_check_view(check, SimpleNamespace(onnx_sha256=sha))  # type: ignore[arg-type]
    assert view["mismatch"] is True and "HALTED" in view["text"]


def test_a_halted_engine_is_never_healthy() -> None:
    from deployment.steps import EngineStatus, engine_problem

    sha = "b" * 64
    for document in (
        {"state": "halted", "model_sha256": sha, "pid": 1, "kill_switch": True},
        {"state": "running", "model_sha256": sha, "pid": 1, "kill_switch": True},
    ):
        problem = engine_problem(EngineStatus(document, alive=True), sha)
        assert problem is not None and problem.fatal and "kill switch" in problem.text
    running = {"state": "running", "model_sha256": sha, "pid": 1, "kill_switch": False}
    assert engine_problem(EngineStatus(running, alive=True), sha) is None


# --------------------------------------------------------------------------- at preflight


@pytest.fixture(scope="module")
def install_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An install root with its model folder, and a symlink to it."""
    base = tmp_path_factory.mktemp("spelled-root")
    root = base / "opt" / "ai-trading-bot"
    (root / "src" / "ml").mkdir(parents=True)
    (root / "var").mkdir()
    (base / "link").symlink_to(root)
    return root, base / "link"


@st.composite
def spelled_paths(draw: Any, root: Path, alias: Path) -> str:
    """The root as a shell would reach it: through the symlink or not, with `.` segments,
    detours through its own existing subfolders (`src/..`), repeated and trailing slashes."""
    start = draw(st.sampled_from([str(root), str(alias)]))
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        parts.extend(draw(st.sampled_from([["."], ["src", ".."], ["src", "ml", "..", ".."]])))
    slashes = [draw(st.sampled_from(["/", "//"])) for _ in parts]
    text = start + "".join(s + p for s, p in zip(slashes, parts, strict=True))
    return text + draw(st.sampled_from(["", "/", "//", "/."]))


@given(data=st.data())
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_every_spelling_of_a_root_reports_one_real_root_and_one_host_id(
    install_root: tuple[Path, Path], data: Any
) -> None:
    from deployment.connection import LocalConnection
    from deployment.identity import new_host_id
    from deployment.steps import preflight
    from deployment.targets import HostSpec, TargetSpec

    root, alias = install_root
    spelled = data.draw(spelled_paths(root, alias))
    host = HostSpec("localhost", install_root=spelled, upload_dir=str(root.parent / "upload"))
    target = TargetSpec(name="t", hosts=(host,), local=True, min_free_bytes=1)
    report = preflight(
        LocalConnection("localhost"),
        target.layout_for(host, "btcusdt_sentiment"),
        name="btcusdt_sentiment",
        needed_bytes=0,
        min_free_bytes=1,
        new_host_id=new_host_id(),
    )
    written = (root / ".tradebot-host-id").read_text().strip()
    assert report.real_root == str(root.resolve()), spelled
    assert report.host_id == written, "the first deploy's id, whatever the spelling"
    assert list(root.glob(".tradebot-host-id.tmp*")) == [], "no temporary id file left"


def test_first_deploys_at_the_same_moment_agree_on_one_host_id(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from deployment.connection import LocalConnection
    from deployment.identity import new_host_id
    from deployment.steps import preflight
    from deployment.targets import HostSpec, TargetSpec

    root = tmp_path / "opt"
    (root / "src" / "ml").mkdir(parents=True)
    host = HostSpec("localhost", install_root=str(root), upload_dir=str(tmp_path / "upload"))
    layout = TargetSpec(name="t", hosts=(host,), local=True).layout_for(host, "m")

    def look(_: int) -> str:
        return preflight(
            LocalConnection("localhost"), layout, name="m", needed_bytes=0, min_free_bytes=1,
            new_host_id=new_host_id(),
        ).host_id  # fmt: skip

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(look, range(16)))
    assert ids == {(root / ".tradebot-host-id").read_text().strip()}
    assert len(next(iter(ids))) == 36
