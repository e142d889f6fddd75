"""Bulk-inference throughput of the EfficientNet-Lite0 backbone on 1920x1080 JPEGs.

    python bench/inference.py [-n 256] [--batch 32] [--cores N]

Builds the backbone in memory (as install_backbone does), makes N unique 1920x1080 JPEGs
(crops and rescales of scikit-image's sample photos with noise, quality 90) in memory, then
measures in the same run:

* t_decode: draft-mode decode + letterbox + normalise of one image, one thread;
* t_model: the model on pre-decoded tensors, per image, batches of ``--batch``, one thread;
* the end-to-end rate of the production path (``inference.pipeline.scored_batches``, as
  ``predictions_make`` runs it: each core decodes a batch of ``--batch`` images and runs the
  single-threaded session on it), and beside it the older layout (decoding threads feeding
  one session that spreads each batch over all cores).

On a CPU, decode and model compete for the same cores, so the ceiling is
cores / (t_decode + t_model) images/s; the script prints that limit and the ratio reached.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ.setdefault("LOUPE_DATA_DIR", str(Path(tempfile.gettempdir()) / "loupe-bench-inference"))
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
sys.path.insert(0, str(ROOT))

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "camera")


def make_jpegs(count: int) -> list[bytes]:
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(0)
    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS]
    out = []
    for index in range(count):
        photo = photos[index % len(photos)]
        w, h = photo.size
        crop = rng.uniform(0.6, 1.0)
        cw, ch = int(w * crop), int(h * crop)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = photo.crop((left, top, left + cw, top + ch)).resize((1920, 1080))
        pixels = np.asarray(image, np.int16) + rng.integers(-6, 7, (1080, 1920, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=90
        )
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import django

    django.setup()
    import numpy as np
    import onnxruntime as ort

    from inference import backbone
    from inference.pipeline import scored_batches
    from inference.preprocessing import load_input
    from inference.runtime import session_options

    model = backbone.build_from_package()
    spec = backbone.SPEC
    jpegs = make_jpegs(args.n)
    print(f"{args.n} JPEGs 1920x1080, mean {statistics.mean(map(len, jpegs)) / 1024:.0f} KiB")
    print(f"onnxruntime {ort.__version__}, {args.cores} cores, batch {args.batch}")

    def load(data: bytes) -> np.ndarray:
        return load_input(io.BytesIO(data), spec)

    # Stage 1: decode + preprocess, one thread.
    load(jpegs[0])
    started = time.perf_counter()
    samples = [load(data) for data in jpegs]
    t_decode = (time.perf_counter() - started) / len(jpegs)

    # Stage 2: the model alone, one thread, on the tensors decoded above.
    single = ort.InferenceSession(
        model, sess_options=session_options(threads=1), providers=["CPUExecutionProvider"]
    )
    batches = [np.stack(samples[i : i + args.batch]) for i in range(0, len(samples), args.batch)]
    single.run(["logits"], {"image": batches[0]})
    started = time.perf_counter()
    for batch in batches:
        single.run(["logits"], {"image": batch})
    t_model = (time.perf_counter() - started) / len(samples)

    # End to end, the production path: each core decodes a batch and runs the model on it
    # with a single-threaded session (``scored_batches``), the session shared by the threads.
    def score(batch: np.ndarray) -> np.ndarray:
        return single.run(["logits"], {"image": batch})[0]

    started = time.perf_counter()
    done = 0
    for kept, _ in scored_batches(jpegs, load, score, batch_size=args.batch, workers=args.cores):
        done += len(kept)
    elapsed = time.perf_counter() - started
    rate = done / elapsed

    # For comparison, the layout it replaced: decoding threads keep the next batches ready while
    # one session spreads each batch over all cores.
    spread = ort.InferenceSession(
        model, sess_options=session_options(threads=args.cores), providers=["CPUExecutionProvider"]
    )
    spread.run(["logits"], {"image": batches[0]})
    started = time.perf_counter()
    spread_done = 0

    def run_spread(decoded: Iterator[np.ndarray]) -> int:
        samples = list(decoded)
        spread.run(["logits"], {"image": np.stack(samples)})
        return len(samples)

    with ThreadPoolExecutor(max_workers=args.cores) as pool:
        ahead: deque[Iterator[np.ndarray]] = deque()
        for start in range(0, len(jpegs), args.batch):
            ahead.append(pool.map(load, jpegs[start : start + args.batch]))
            if len(ahead) > 2:  # two batches decoded ahead of the model
                spread_done += run_spread(ahead.popleft())
        while ahead:
            spread_done += run_spread(ahead.popleft())
    spread_rate = spread_done / (time.perf_counter() - started)

    limit = args.cores / (t_decode + t_model)
    print(f"t_decode  {t_decode * 1000:7.2f} ms/image (draft decode + letterbox, 1 thread)")
    print(f"t_model   {t_model * 1000:7.2f} ms/image ({1 / t_model:.0f} images/s, 1 thread)")
    print(f"limit     {limit:7.1f} images/s  = {args.cores} / (t_decode + t_model)")
    print(f"end2end   {rate:7.1f} images/s  ({done} images in {elapsed:.2f} s, scored_batches)")
    print(f"ratio     {rate / limit:7.1%} of the limit")
    print(
        f"spread    {spread_rate:7.1f} images/s  ({spread_rate / limit:.1%} of the limit: "
        "decoding threads feeding one session over all cores)"
    )


if __name__ == "__main__":
    main()
