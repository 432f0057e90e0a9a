"""The embedded broker (tradebot.broker) under concurrent producers and consumers.

Real processes, real files: several producers publish while two consumers drain the
same queue folder. Every message must arrive exactly once and nobody may crash.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

from kombu import Connection, Exchange, Queue

from tradebot.broker import TRANSPORT_PATH, AtomicFilesystemTransport, folder_options

PRODUCERS = 4
MESSAGES_EACH = 150
EXCHANGE = Exchange("soak", type="direct")
QUEUE = Queue("soak", EXCHANGE, routing_key="soak")


def _connection(folder: str) -> Connection:
    return Connection(
        "filesystem://", transport=TRANSPORT_PATH, transport_options=folder_options(Path(folder))
    )


def _produce(folder: str, producer_id: int) -> None:
    # Payloads of varied size so some writes take longer than a consumer's poll.
    with _connection(folder) as conn:
        producer = conn.Producer(serializer="json")
        for n in range(MESSAGES_EACH):
            body = {"id": f"{producer_id}-{n}", "pad": "x" * (n * 97 % 20000)}
            producer.publish(body, exchange=EXCHANGE, routing_key="soak", declare=[QUEUE])


def _consume(folder: str, out_path: str, stop_path: str) -> None:
    received: list[str] = []
    with _connection(folder) as conn, conn.SimpleQueue(QUEUE) as queue:
        idle = 0
        while idle < 40:  # 40 empty polls in a row after the producers stopped
            try:
                message = queue.get(timeout=0.05)
            except queue.Empty:
                if os.path.exists(stop_path):
                    idle += 1
                continue
            idle = 0
            received.append(message.payload["id"])
            message.ack()
    Path(out_path).write_text(json.dumps(received))


def test_concurrent_producers_and_consumers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    stop = tmp_path / "producers-done"
    ctx = multiprocessing.get_context("spawn")
    consumers = [
        ctx.Process(target=_consume, args=(str(folder), str(tmp_path / f"c{i}.json"), str(stop)))
        for i in range(2)
    ]
    producers = [ctx.Process(target=_produce, args=(str(folder), i)) for i in range(PRODUCERS)]
    for process in consumers + producers:
        process.start()
    for process in producers:
        process.join(timeout=120)
    stop.touch()
    for process in consumers:
        process.join(timeout=120)

    assert [p.exitcode for p in producers + consumers] == [0] * (PRODUCERS + 2)
    received = [i for c in range(2) for i in json.loads((tmp_path / f"c{c}.json").read_text())]
    expected = {f"{p}-{n}" for p in range(PRODUCERS) for n in range(MESSAGES_EACH)}
    assert len(received) == len(expected), "a message was lost or delivered twice"
    assert set(received) == expected
    assert not list((folder / "bad").iterdir())
    assert not list((folder / "queue").iterdir())


def test_an_unreadable_message_is_set_aside_and_the_next_one_delivered(
    tmp_path: Path, caplog
) -> None:
    folder = tmp_path / "broker"
    with _connection(str(folder)) as conn, conn.SimpleQueue(QUEUE) as queue:
        # What kombu's own producer leaves for a moment: a created, still empty file.
        (folder / "queue" / "0_broken.soak.msg").write_bytes(b"")
        queue.put({"id": "good"})
        message = queue.get(timeout=5)
        assert message.payload == {"id": "good"}
        message.ack()
    assert (folder / "bad" / "0_broken.soak.msg").exists()
    assert "stayed unreadable" in caplog.text


def test_the_broker_writes_nothing_into_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Its own queue name: kombu remembers bindings per process, not per folder.
    queue = Queue("cwd", Exchange("cwd", type="direct"), routing_key="cwd")
    with _connection(str(tmp_path / "var" / "broker")) as conn, conn.SimpleQueue(queue) as q:
        q.put({"id": 1})
        q.get(timeout=5).ack()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["var"]


def test_settings_use_the_atomic_transport_for_filesystem_urls() -> None:
    from celery import Celery

    from tradebot.config import broker_transport

    app = Celery(broker="filesystem://")
    app.conf.broker_transport = broker_transport("filesystem://")
    app.conf.broker_transport_options = {"control_folder": "/nonexistent"}
    with app.connection_for_write() as conn:
        assert conn.transport_cls is AtomicFilesystemTransport or isinstance(
            conn.transport, AtomicFilesystemTransport
        )
    assert broker_transport("redis://localhost:6379/0") is None


def test_every_broker_folder_is_under_the_configured_folder(tmp_path: Path) -> None:
    from tradebot.config import broker_transport_options

    options = broker_transport_options("filesystem://", folder=tmp_path / "var" / "broker")
    folders = [Path(v) for k, v in options.items() if k.endswith("_folder") or "folder_" in k]
    assert {"control_folder", "tmp_folder", "data_folder_in"} <= set(options)
    assert all(f.is_relative_to(tmp_path / "var" / "broker") and f.is_dir() for f in folders)
