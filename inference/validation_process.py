"""``onnx_check`` in a child process with bounded memory and time.

A model from outside Loupe may be built to exhaust whoever loads it: a million nodes held a
web worker for most of a minute, five million took 14 GiB. The worker validates uploads in a
child process whose address space is capped (``RLIMIT_AS``, ``LOUPE_MODEL_VALIDATION_MEMORY``)
and which is killed after ``LOUPE_MODEL_VALIDATION_SECONDS``; running out of either refuses
the model with a message that names the setting, and the worker itself never holds the graph.

The child is ``python -m inference.validation_child MODEL_PATH``
(``inference/validation_child.py``); it reads its parameters as JSON on stdin and answers one
JSON line on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from typing import Any

from django.conf import settings

from inference.preprocessing import PreprocessSpec
from inference.validation import CheckedModel, ModelRejected


def _memory_text(limit: int) -> str:
    return f"{limit / 1024**3:.1f} GiB" if limit >= 1024**3 else f"{limit / 1024**2:.0f} MiB"


def memory_refusal(limit: int) -> ModelRejected:
    return ModelRejected(
        f"validating the model needs more than {_memory_text(limit)} of memory "
        "(LOUPE_MODEL_VALIDATION_MEMORY)"
    )


def onnx_check_isolated(
    *,
    path: str,
    labels: list[str],
    spec: PreprocessSpec,
    embedding_output: str = "",
    memory_limit: int | None = None,
    time_limit: int | None = None,
    max_nodes: int | None = None,
) -> CheckedModel:
    """``onnx_check`` of the ONNX file at ``path`` (on local disk) in a child process limited
    to ``memory_limit`` bytes of address space and ``time_limit`` seconds (defaults: the
    settings). Raises ModelRejected naming what is wrong, or the limit the check ran into."""
    memory = settings.LOUPE_MODEL_VALIDATION_MEMORY if memory_limit is None else memory_limit
    seconds = settings.LOUPE_MODEL_VALIDATION_SECONDS if time_limit is None else time_limit
    request = {
        "labels": labels,
        "spec": {**asdict(spec), "mean": list(spec.mean), "std": list(spec.std)},
        "embedding_output": embedding_output,
        "max_nodes": settings.LOUPE_MAX_MODEL_NODES if max_nodes is None else max_nodes,
        "memory_limit": memory,
    }
    try:
        finished = subprocess.run(
            [sys.executable, "-m", "inference.validation_child", path],
            input=json.dumps(request).encode(),
            capture_output=True,
            timeout=seconds,
            cwd=settings.BASE_DIR,
            # One thread and few malloc arenas: each thread's arena reserves 64 MiB of address
            # space, which would count against the cap without holding any of the model.
            env={
                **os.environ,
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MALLOC_ARENA_MAX": "2",
            },
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ModelRejected(
            f"validating the model took longer than {seconds:,} s (LOUPE_MODEL_VALIDATION_SECONDS)"
        ) from None
    answer = _answer(finished.stdout)
    if answer is None:
        if finished.returncode < 0 or b"MemoryError" in finished.stderr:
            # Killed by a signal (an allocation that failed where nothing could catch it).
            raise memory_refusal(memory)
        last = finished.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ModelRejected(
            f"the validation stopped unexpectedly (exit {finished.returncode}): {last[0][:300]}"
        )
    if answer.get("ok"):
        return CheckedModel(**answer["checked"])
    if answer.get("memory"):
        raise memory_refusal(memory)
    raise ModelRejected(str(answer.get("reason") or "refused"))


def _answer(stdout: bytes) -> dict[str, Any] | None:
    for line in reversed(stdout.decode(errors="replace").strip().splitlines()):
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return parsed
    return None


def onnx_check_isolated_bytes(
    *, data: bytes, labels: list[str], spec: PreprocessSpec, embedding_output: str = ""
) -> CheckedModel:
    """``onnx_check_isolated`` of bytes already in memory (written to a temporary file)."""
    with tempfile.NamedTemporaryFile(suffix=".onnx") as handle:
        handle.write(data)
        handle.flush()
        return onnx_check_isolated(
            path=handle.name, labels=labels, spec=spec, embedding_output=embedding_output
        )
