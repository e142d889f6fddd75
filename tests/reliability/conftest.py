"""Shared tools of the fault battery: real worker processes this test starts and kills, and a
TCP proxy in front of PostgreSQL that a test can cut."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.test_worker import WAIT_SECONDS
from tests.test_worker import Worker as BaseWorker

on_postgresql = connection.vendor == "postgresql"


class Worker(BaseWorker):
    """A Celery worker process on this test's database, broker and media folder."""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement, no cleanup (a power cut)."""
        self.process.kill()
        self.process.wait(timeout=15)

    def wait_closely(self, condition: Callable[[], bool], what: str) -> None:
        """``wait_for``, looking every 20 ms: for a moment that passes quickly."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"no sign of {what}; worker log:\n{self.output()}")
            time.sleep(0.02)


@pytest.fixture
def start_worker(
    transactional_db: None, media_root: Path, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """Start real workers (``start_worker(**extra_env)``); every one is killed afterwards."""
    started: list[Worker] = []

    def start(**extra_env: str) -> Worker:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "LOUPE_TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
            "LOUPE_MEDIA_ROOT": str(media_root),
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        log = tmp_path / f"worker-{len(started)}.log"
        celery = Path(sys.executable).with_name("celery")
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [
                    str(celery),
                    "-A",
                    "config",
                    "worker",
                    "--pool=solo",
                    "--loglevel=INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--hostname",
                    f"reliability-{os.getpid()}-{len(started)}@%h",
                ],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a server until ``cut()`` drops every connection and
    refuses new ones: a database that vanishes mid-request."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                if not self.open:
                    client.close()
                    server.close()
                    return
                self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        with contextlib.suppress(OSError, ValueError):
            while self.open:
                readable, _, _ = select.select([a, b], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)

    def cut(self) -> None:
        with self.lock:
            self.open = False
            for sock in [self.listener, *self.sockets]:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
