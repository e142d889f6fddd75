from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from curation.models import Image


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

    def handle(self, *args: Any, **options: Any) -> None:
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        if not options["no_demo"] and not Image.objects.exists():
            self.stdout.write("The library is empty: loading the demo library…")
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
        self.stdout.write(
            self.style.SUCCESS(
                f"Loupe is running at http://{options['host']}:{options['port']}/ "
                f"(data in {settings.DATA_DIR}). Ctrl-C stops it."
            )
        )

        def stop(signum: int, frame: Any) -> None:
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
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
