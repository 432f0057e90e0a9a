"""Benchmark of deployment (deployment.runner) over real SSH to loopback hosts.

    .venv/bin/python benchmarks/bench_deploy.py [--runs 5] [--stand-in]

Prints, each as the median of --runs runs:
- a deploy to one loopback host, restart and health check included (target < 6 s);
- a rollback to the previous version on that host (target < 6 s);
- a deploy to four hosts in parallel (target <= 1.3 x the single-host deploy), with how busy
  the machine's CPUs were meanwhile (all four "hosts" share them: a ratio above the target
  beside CPUs near 100% busy names the bound, this machine, not the deploy's code);
and the median time of each step of the single-host deploy.

Hosts are OpenSSH servers on 127.0.0.1 (free ports, throwaway keys) with install roots
in a temp folder; the engine (`python -m engine.live`, with a tiny model trained here,
or the contract stand-in with --stand-in) runs as the service, restarted by a script
since systemd is absent.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks import _figures  # noqa: E402
from deployment.runner import DeploymentOutcome, deploy, rollback  # noqa: E402
from deployment.targets import ArtifactSpec, TargetSpec  # noqa: E402
from tests.deployment.hosts import (  # noqa: E402
    FakeHost,
    SshServer,
    free_port,
    keygen,
    make_fake_host,
    target_settings,
)
from tests.deployment.support import (  # noqa: E402
    ENGINE_CHOICE_VARIABLE,
    MODEL_NAME,
    ModelFactory,
    engine_setup,
)

SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"


class TempFolders:
    """The one method of pytest's TempPathFactory that the helpers use (TempFolderFactory)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def mktemp(self, basename: str) -> Path:
        self.count += 1
        path = self.root / f"{basename}{self.count}"
        path.mkdir()
        return path


def timed(action: Callable[[], DeploymentOutcome]) -> tuple[float, DeploymentOutcome]:
    started = time.perf_counter()
    outcome = action()
    return time.perf_counter() - started, outcome


def require_success(outcome: DeploymentOutcome) -> None:
    if outcome.status != "succeeded":
        failed = [f"{r.host} {r.step}: {r.detail}" for r in outcome.steps if not r.ok]
        raise SystemExit(f"{outcome.operation} {outcome.deployment_id} {outcome.status}: {failed}")


def start_hosts(count: int, folders: TempFolders, engine, key: Path, first: ArtifactSpec):
    hosts: list[FakeHost] = []
    for index in range(count):
        server = SshServer(folders.mktemp("sshd"), free_port(), key.with_suffix(".pub"))
        server.start()
        host = make_fake_host(folders.mktemp("host"), engine, name=f"h{index + 1}", server=server)
        host.install(first)
        host.restart()
        hosts.append(host)
    for host in hosts:
        host.wait_until_serving(first.onnx_sha256, timeout=60)
    return hosts


def stop_hosts(hosts: list[FakeHost]) -> None:
    for host in hosts:
        host.stop_engine()
        if host.server is not None:
            host.server.stop()


def bench_single(target: TargetSpec, versions: list[ArtifactSpec], runs: int):
    deploy_times, rollback_times = [], []
    step_times: dict[str, list[float]] = defaultdict(list)
    for run in range(runs):
        artifact = versions[(run % (len(versions) - 1)) + 1]
        seconds, outcome = timed(functools.partial(deploy, target, artifact, f"bench-{run}"))
        require_success(outcome)
        deploy_times.append(seconds)
        for record in outcome.steps:
            step_times[record.step].append(record.seconds)
        seconds, outcome = timed(
            functools.partial(rollback, target, name=MODEL_NAME, deployment_id=f"bench-rb-{run}")
        )
        require_success(outcome)
        rollback_times.append(seconds)
    return deploy_times, rollback_times, step_times


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every CPU since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Share of all CPUs' time that was busy between two cpu_ticks() readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


def bench_parallel(target: TargetSpec, versions: list[ArtifactSpec], runs: int) -> list[float]:
    times = []
    for run in range(runs):
        artifact = versions[(run % (len(versions) - 1)) + 1]
        seconds, outcome = timed(functools.partial(deploy, target, artifact, f"par-{run}"))
        require_success(outcome)
        times.append(seconds)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stand-in", action="store_true", help="use the contract stand-in")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON rows here")
    args = parser.parse_args()
    if args.stand_in:
        os.environ[ENGINE_CHOICE_VARIABLE] = "stand-in"

    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as temp:
        folders = TempFolders(Path(temp))
        engine, base = engine_setup(SHARED_DATA_DIR, folders)
        print(
            f"engine: {'python -m engine.live (tiny trained model)' if engine.real else 'stand-in'}"
        )
        key = folders.mktemp("userkey") / "userkey"
        keygen(key)
        models = ModelFactory(folders.mktemp("models"), base_dir=base)
        versions = [models.make(version) for version in (1, 2, 3)]

        single = start_hosts(1, folders, engine, key, versions[0])
        try:
            target = TargetSpec(**{**target_settings(single, key), "health_poll_interval": 0.2})
            deploy_times, rollback_times, step_times = bench_single(target, versions, args.runs)
        finally:
            stop_hosts(single)

        four = start_hosts(4, folders, engine, key, versions[0])
        try:
            target = TargetSpec(
                **{**target_settings(four, key), "parallelism": 4, "health_poll_interval": 0.2}
            )
            ticks = cpu_ticks()
            parallel_times = bench_parallel(target, versions, max(3, args.runs // 2))
            parallel_busy = busy_share(ticks, cpu_ticks())
        finally:
            stop_hosts(four)

    single_median = statistics.median(deploy_times)
    rollback_median = statistics.median(rollback_times)
    parallel_median = statistics.median(parallel_times)
    ratio = parallel_median / single_median
    print(f"runs: {args.runs} single-host deploys and rollbacks, {len(parallel_times)} x 4 hosts")
    # All "hosts" share this machine's CPUs: four engines starting at once compete for them,
    # which a real four-machine target does not.
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(
        f"deploy, 1 host (restart + health check): median {single_median:.2f} s "
        f"(min {min(deploy_times):.2f}, max {max(deploy_times):.2f})  target < 6 s: "
        f"{'ok' if single_median < 6 else 'MISSED'}"
    )
    print(
        f"rollback, 1 host: median {rollback_median:.2f} s "
        f"(min {min(rollback_times):.2f}, max {max(rollback_times):.2f})  target < 6 s: "
        f"{'ok' if rollback_median < 6 else 'MISSED'}"
    )
    print(
        f"deploy, 4 hosts in parallel: median {parallel_median:.2f} s = {ratio:.2f} x single  "
        f"target <= 1.3 x: {'ok' if ratio <= 1.3 else 'MISSED'}; all CPUs "
        f"{parallel_busy:.0%} busy meanwhile (near 100%: the shared CPUs bound it)"
    )
    print("single-host deploy, median per step:")
    for step, values in step_times.items():
        print(f"  {step:<14} {statistics.median(values):.3f} s")
    _figures.record(
        "deploy, 1 host vs 4 in parallel, median (s)", single_median, "s",
        peer=parallel_median, peer_label="the same deploy to 4 hosts", target=("ratio", "<=", 1.3),
    )  # fmt: skip
    _figures.record(
        "CPUs busy during the 4-host deploys (the bound when near 100%)", parallel_busy * 100,
        "%",
    )  # fmt: skip
    _figures.record(
        "deploy, 1 host, median (s)", single_median, "s", target=("tradebot", "<=", 6.0)
    )  # fmt: skip
    _figures.record(
        "rollback, 1 host, median (s)", rollback_median, "s", target=("tradebot", "<=", 6.0)
    )  # fmt: skip
    _figures.write(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
