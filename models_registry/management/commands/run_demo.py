"""`make demo`: walk the model lifecycle on the embedded default, then leave the admin running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry import roles

DEMO_PASSWORD = "tradebot-demo"  # noqa: S105 -- printed for the demo; local machine only
# A small model trained in minutes has no edge the default gates would accept (they ask
# for a deflated Sharpe ratio >= 0.95 and a return above buy-and-hold's); the demo loosens
# them (None switches a gate off) so the whole walk can be seen, and prints beside every
# result which default gate refuses it. Real deployments keep the defaults in
# models_registry/gates.py or set stricter ones.
DEMO_GATES: dict[str, dict[str, Any]] = {
    "validation": {
        "min_dsr": None,
        "total_return_above": None,
        "beats_buy_and_hold_by": None,
        "beats_always_flat_by": None,
        "max_drawdown": 0.5,
        "min_trades": 0,
        "min_bars": 24 * 30,
    },
    "paper": {"min_bars": 24 * 7, "max_drawdown": 0.5, "max_divergence": 0.01},
    "drift": {"min_new_bars": 48},
}
DEMO_USERS = {
    "admin": None,
    "engineer": roles.ML_ENGINEER,
    "approver": roles.APPROVER,
    "deployer": roles.DEPLOYER,
    "auditor": roles.AUDITOR,
}


class Command(BaseCommand):
    help = (
        "Set up the embedded default (SQLite, filesystem broker), create the demo users, walk "
        "the model lifecycle on the shipped data, then run the web server, a Celery worker and "
        "Celery beat until Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
        parser.add_argument(
            "--no-serve", action="store_true", help="Walk the lifecycle, then exit."
        )
        parser.add_argument(
            "--skip-lifecycle", action="store_true", help="Only set up and serve the admin."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write("database migrated")
        users = self.create_demo_users()
        self.demo_policy(users)
        try:
            # Inside the try: a step that fails must not leave the local hosts' engines running.
            stopped = "" if options["skip_lifecycle"] else self.walk(users)
            if not options["no_serve"]:
                # Always end with the admin served: what the walk recorded is there to read.
                self.serve(port=self.pick_port(options["port"]))
            if stopped:
                raise CommandError(stopped)
        finally:
            self.stop_demo_hosts()

    def demo_policy(self, users: dict[str, Any]) -> None:
        """The demo's looser gates as a named "demo" policy, through the four-eyes change.

        Never through the environment: that only seeds the first policy, and a process whose
        environment disagrees with the policy in force makes only exploratory runs.
        """
        from models_registry.demo_steps import demo_policy_set
        from models_registry.policy import policy_in_force

        if policy_in_force("").label.startswith("demo"):
            return  # a re-run of the demo: its policy is in force already
        dotted = {
            f"gates.{stage}.{name}": value
            for stage, thresholds in DEMO_GATES.items()
            for name, value in thresholds.items()
        }
        self.say("the demo's policy (looser than the shipped defaults, listed in red on pages)")
        demo_policy_set(
            users=users,
            say=self.say,
            dotted=dotted,
            label="demo",
            comment="Demo: a tiny model has no edge; loosened so the whole walk can be seen",
        )

    def walk(self, users: dict[str, Any]) -> str:
        """Walk the lifecycle; a step that fails is reported, not a crash: returns why."""
        from models_registry.demo import walk_lifecycle
        from models_registry.demo_steps import DemoStepFailed
        from models_registry.models import RegistryError

        try:
            walk_lifecycle(users=users, say=self.say)
        except (DemoStepFailed, CommandError, RegistryError) as exc:
            why = (
                f"the demo's walk stopped: {exc}. The admin shows what was recorded; "
                "`make demo` again continues from there, `make clean-demo` starts over."
            )
            self.stderr.write(why)
            return why
        return ""

    def stop_demo_hosts(self) -> None:
        """The engines the demo's local targets run are the demo's processes too."""
        from deployment.local_service import stop

        hosts = Path(settings.VAR_DIR) / "demo-hosts"
        for root in sorted(hosts.glob("*")) if hosts.is_dir() else []:
            if stop(root):
                self.stdout.write(f"stopped the engine of local host {root.name}")

    def say(self, message: str) -> None:
        self.stdout.write(self.style.SUCCESS("==> ") + message)

    def create_demo_users(self) -> dict[str, Any]:
        user_model = get_user_model()
        users = {}
        for username, role in DEMO_USERS.items():
            user, created = user_model.objects.get_or_create(
                username=username,
                defaults={"email": f"{username}@tradebot.local", "is_staff": True},
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.is_superuser = role is None
                user.save()
            if role:
                user.groups.add(Group.objects.get(name=role))
            users[username] = user
        return users

    @staticmethod
    def pick_port(preferred: int) -> int:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def serve(self, *, port: int) -> None:
        python = sys.executable
        root = Path(settings.BASE_DIR)
        commands = {
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            "worker": [
                python, "-m", "celery", "-A", "tradebot", "worker", "--pool=solo",
                "--queues=default,training,backtest,deploy", "--loglevel=INFO",
                "--hostname=demo@%h",
            ],
            # Exactly one beat process may run: it is the only scheduler.
            "beat": [python, "-m", "celery", "-A", "tradebot", "beat", "--loglevel=INFO"],
        }  # fmt: skip
        processes = {name: subprocess.Popen(cmd, cwd=root) for name, cmd in commands.items()}
        self.print_banner(port)
        stop = _stop_on_signals()
        try:
            while not stop():
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with code {process.returncode}; stopping")
                        return
                time.sleep(0.5)
        finally:
            _terminate(processes.values())

    def print_banner(self, port: int) -> None:
        self.stdout.write("")
        self.say(f"admin: http://127.0.0.1:{port}/admin/")
        for username, role in DEMO_USERS.items():
            self.stdout.write(f"    {username:<9} / {DEMO_PASSWORD}   {role or 'superuser'}")
        self.stdout.write("    Ctrl-C stops the web server, the worker and beat.")


def _stop_on_signals() -> Callable[[], bool]:
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: flag["stop"]


def _terminate(processes: Any) -> None:
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
