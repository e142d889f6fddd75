from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from accounts.selectors import first_admin_login
from curation.models import Image

# How long start-up waits for the web server to answer before printing where it is anyway.
ANSWER_WAIT_SECONDS = 60.0


def _answering(host: str, port: int) -> bool:
    """True once a web worker answers (with any status): gunicorn's master accepts connections
    before its workers have loaded Loupe."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/login/")
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def wait_until_answering(
    host: str, port: int, processes: list[subprocess.Popen[bytes]], *, timeout: float
) -> bool:
    """Wait until the web server answers at ``host:port`` or ``timeout`` seconds pass; False
    if a process exited meanwhile (Ctrl-C, or a crash)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            return False
        if _answering(host, port):
            return True
        time.sleep(0.2)
    return all(process.poll() is None for process in processes)


class Command(BaseCommand):
    help = (
        "Run Loupe: migrate, create the first admin, load the demo library into an empty "
        "database, then start the web server and a Celery worker (with its periodic tasks) "
        "together. Ctrl-C stops both."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.LOUPE_HOST)
        parser.add_argument("--port", type=int, default=settings.LOUPE_PORT)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--worker-concurrency", type=int, default=os.cpu_count() or 1)
        parser.add_argument("--no-demo", action="store_true", help="never load the demo library")

    def _banner(self, host: str, port: int) -> None:
        lines = [
            f"Loupe is running at http://{host}:{port}/ (data in {settings.DATA_DIR}). "
            "Ctrl-C stops it."
        ]
        login = first_admin_login()
        if login is not None and login.password:
            lines.append(
                f"Sign in as {login.username!r} with the password {login.password!r} "
                f"(kept in {login.password_file} until you change it)."
            )
        elif login is not None:
            lines.append(
                f"Sign in as {login.username!r} with the password set in LOUPE_ADMIN_PASSWORD."
            )
        width = max(len(line) for line in lines)
        rule = "=" * min(width, 100)
        framed = ["", rule, *(self.style.SUCCESS(line) for line in lines), rule]
        self.stdout.write("\n".join(framed))
        self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        if not options["no_demo"] and not Image.objects.exists():
            self.stdout.write(
                "The library is empty: loading the demo library and training its model "
                "(a minute or two)…"
            )
            call_command("demo")

        bin_dir = os.path.dirname(sys.executable)
        worker = [
            os.path.join(bin_dir, "celery"),
            "-A",
            "config",
            "worker",
            "--beat",
            "--loglevel=INFO",
            f"--concurrency={options['worker_concurrency']}",
            f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}",
        ]
        web = [
            os.path.join(bin_dir, "gunicorn"),
            "config.wsgi:application",
            f"--bind={options['host']}:{options['port']}",
            f"--workers={options['web_workers']}",
            "--threads=4",
            "--access-logfile=-",
            "--timeout=120",
        ]
        processes = [subprocess.Popen(worker), subprocess.Popen(web)]

        def stop(signum: int, frame: Any) -> None:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            # The banner comes last, once the web server answers, so the address and the
            # password are not buried in the install, demo and server output above them.
            host, port = options["host"], options["port"]
            # Listening on every interface (0.0.0.0) includes the loopback one.
            connect_to = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
            if wait_until_answering(connect_to, port, processes, timeout=ANSWER_WAIT_SECONDS):
                self._banner(host, port)
            while all(p.poll() is None for p in processes):
                time.sleep(0.5)
        finally:
            stop(signal.SIGTERM, None)
            deadline = time.monotonic() + 20
            for process in processes:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
        failed = [
            command[0]
            for command, process in zip((worker, web), processes, strict=True)
            if process.returncode not in (0, -signal.SIGTERM, None)
        ]
        if failed:
            raise SystemExit(f"Stopped because a process exited: {', '.join(map(str, failed))}")
