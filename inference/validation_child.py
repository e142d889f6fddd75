"""The child process of ``inference.validation_process.onnx_check_isolated``:
``python -m inference.validation_child MODEL_PATH``, parameters as JSON on stdin, one JSON line
on stdout (``{"ok": true, "checked": {...}}`` or ``{"ok": false, "reason": "..."}``, with
``"memory": true`` when the address-space cap stopped the check).

Only the standard library is imported before the cap is set, so everything the check loads
(Django, onnx, onnxruntime, the model) counts against it.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
from dataclasses import asdict
from typing import Any

# A refused allocation is never counted in the peak: a peak this close to the cap means the
# cap is what stopped the check, whatever words the parser or onnxruntime used for it.
NEAR_LIMIT = 0.85
# How protobuf, onnx and onnxruntime word a refused allocation (a large one fails with the
# peak still far below the cap): "Arena alloc failed", "bad_alloc", "Failed to allocate
# memory", and the checker's "Failed to serialize proto" when the copy it makes cannot fit.
OUT_OF_MEMORY = re.compile(r"alloc|out of memory|Failed to serialize proto", re.IGNORECASE)


def _peak_address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    return 0


def main(path: str) -> dict[str, Any]:
    request = json.loads(sys.stdin.buffer.read())
    limit = int(request["memory_limit"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        import django

        django.setup()
        from inference.preprocessing import PreprocessSpec
        from inference.validation import ModelRejected, onnx_check
    except MemoryError:
        return {"ok": False, "memory": True}

    fields = request["spec"]
    spec = PreprocessSpec(**{**fields, "mean": tuple(fields["mean"]), "std": tuple(fields["std"])})
    try:
        with open(path, "rb") as stream:
            data = stream.read()
        checked = onnx_check(
            data=data,
            labels=request["labels"],
            spec=spec,
            embedding_output=request["embedding_output"],
            max_nodes=int(request["max_nodes"]),
        )
    except MemoryError:
        return {"ok": False, "memory": True}
    except Exception as exc:
        if _peak_address_space() >= NEAR_LIMIT * limit or OUT_OF_MEMORY.search(str(exc)):
            return {"ok": False, "memory": True}
        if isinstance(exc, ModelRejected):
            return {"ok": False, "reason": str(exc)}
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        return {"ok": False, "reason": f"the validation failed: {lines[-1][:300]}"}
    return {"ok": True, "checked": asdict(checked)}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    sys.stdout.write(json.dumps(main(sys.argv[1])) + "\n")
    sys.stdout.flush()
