"""Benchmark of deployment (deployment.runner) over real SSH to loopback hosts.

    .venv/bin/python benchmarks/bench_deploy.py [--runs 5] [--stand-in]

Prints, each as the median of --runs runs:
- a deploy to one loopback host, restart and health check included (target < 6 s);
- a rollback to the previous version on that host (target < 6 s);
- a deploy to four hosts in parallel (target <= 1.3 x the single-host deploy), with how busy
  the machine's CPUs were meanwhile;
- its floor on this machine: all four "hosts" share its CPUs, and most of a deploy's time is
  the engine stopping and starting (restart + health check), so four engines restarting at
  once, with no deploy around them, are timed against one (the same restart script, the
  same model, waiting until each serves it). The floor of the four-host deploy is the
  single-host deploy plus that extra time; its ratio to the floor is what the deploy's own
  code adds (target <= 1.3 x);
and the median time of each step of the single-host deploy, and of the four-host deploy
(the slowest host's).

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
import threading
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


def bench_parallel(
    target: TargetSpec, versions: list[ArtifactSpec], runs: int
) -> tuple[list[float], dict[str, list[float]]]:
    times = []
    step_times: dict[str, list[float]] = defaultdict(list)
    for run in range(runs):
        artifact = versions[(run % (len(versions) - 1)) + 1]
        seconds, outcome = timed(functools.partial(deploy, target, artifact, f"par-{run}"))
        require_success(outcome)
        times.append(seconds)
        slowest: dict[str, float] = {}
        for record in outcome.steps:
            slowest[record.step] = max(slowest.get(record.step, 0.0), record.seconds)
        for step, value in slowest.items():
            step_times[step].append(value)
    return times, step_times


def engines_restarting_at_once(hosts: list[FakeHost], sha256: str, runs: int) -> list[float]:
    """Seconds until every host's engine, restarted at the same moment by its restart script
    (no SSH, no deploy), serves `sha256` again: what the machine's CPUs allow."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        threads = [threading.Thread(target=host.restart) for host in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for host in hosts:
            host.wait_until_serving(sha256, timeout=60)
        times.append(time.perf_counter() - started)
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
            cpu = time.process_time()  # this process: the controller, all its threads
            deploy_times, rollback_times, step_times = bench_single(target, versions, args.runs)
            single_cpu = (time.process_time() - cpu) / (2 * args.runs)
            live = single[0].status().get("model_sha256", "")
            engine_one = engines_restarting_at_once(single, live, args.runs)
        finally:
            stop_hosts(single)

        four = start_hosts(4, folders, engine, key, versions[0])
        try:
            target = TargetSpec(
                **{**target_settings(four, key), "parallelism": 4, "health_poll_interval": 0.2}
            )
            ticks, cpu = cpu_ticks(), time.process_time()
            parallel_times, parallel_steps = bench_parallel(
                target, versions, max(3, args.runs // 2)
            )
            parallel_busy = busy_share(ticks, cpu_ticks())
            parallel_cpu = (time.process_time() - cpu) / len(parallel_times)
            live = four[0].status().get("model_sha256", "")
            engine_four = engines_restarting_at_once(four, live, max(3, args.runs // 2))
        finally:
            stop_hosts(four)

    single_median = statistics.median(deploy_times)
    rollback_median = statistics.median(rollback_times)
    parallel_median = statistics.median(parallel_times)
    ratio = parallel_median / single_median
    one_engine, four_engines = statistics.median(engine_one), statistics.median(engine_four)
    floor = single_median + max(0.0, four_engines - one_engine)
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
    print(
        f"engines restarted at once, no deploy: 4 in {four_engines:.2f} s, 1 in "
        f"{one_engine:.2f} s ({four_engines / one_engine:.2f} x); floor of the 4-host deploy = "
        f"1-host deploy + the difference = {floor:.2f} s; 4-host deploy / floor = "
        f"{parallel_median / floor:.2f} x  target <= 1.3 x: "
        f"{'ok' if parallel_median / floor <= 1.3 else 'MISSED'}"
    )
    print(
        f"the controller's own CPU (SSH, hashing, bookkeeping; all its threads): "
        f"{single_cpu:.2f} s per 1-host deploy or rollback, {parallel_cpu:.2f} s per 4-host "
        "deploy"
    )
    print("median per step: single-host deploy, 4-host deploy (the slowest host):")
    for step, values in parallel_steps.items():
        single_step = statistics.median(step_times[step]) if step in step_times else float("nan")
        print(f"  {step:<14} {single_step:.3f} s  {statistics.median(values):.3f} s")
    _figures.record(
        "deploy, 1 host vs 4 in parallel, median (s)", single_median, "s",
        peer=parallel_median, peer_label="the same deploy to 4 hosts", target=("ratio", "<=", 1.3),
    )  # fmt: skip
    _figures.record(
        "CPUs busy during the 4-host deploys (the bound when near 100%)", parallel_busy * 100,
        "%",
    )  # fmt: skip
    _figures.record(
        "engines restarted at once, no deploy: 1 vs 4 (this machine's bound, s)", one_engine,
        "s", peer=four_engines, peer_label="4 engines at once",
    )  # fmt: skip
    _figures.record(
        "deploy, 4 hosts: its floor (1-host deploy + the extra of 4 engines at once) vs it (s)",
        floor, "s", peer=parallel_median, peer_label="the 4-host deploy",
        target=("ratio", "<=", 1.3),
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
