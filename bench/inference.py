"""Bulk-inference throughput of the EfficientNet-Lite0 backbone on 1920x1080 JPEGs.

    python bench/inference.py [-n 256] [--batch 32] [--cores N] [--rounds 3]

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
Every figure is measured once per round, in turn; the summary takes the best of the rounds for
each (the least disturbed measurement) and lists the per-round ratios beside it.
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
    parser.add_argument("--rounds", type=int, default=3)
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

    single = ort.InferenceSession(
        model, sess_options=session_options(threads=1), providers=["CPUExecutionProvider"]
    )
    spread = ort.InferenceSession(
        model, sess_options=session_options(threads=args.cores), providers=["CPUExecutionProvider"]
    )

    def stage_decode() -> tuple[float, list[np.ndarray]]:
        """Decode + preprocess, one thread: seconds per image, and the samples."""
        started = time.perf_counter()
        samples = [load(data) for data in jpegs]
        return (time.perf_counter() - started) / len(jpegs), samples

    def stage_model(samples: list[np.ndarray]) -> float:
        """The model alone, one thread, on decoded tensors: seconds per image."""
        size = args.batch
        batches = [np.stack(samples[i : i + size]) for i in range(0, len(samples), size)]
        started = time.perf_counter()
        for batch in batches:
            single.run(["logits"], {"image": batch})
        return (time.perf_counter() - started) / len(samples)

    def end_to_end() -> float:
        """The production path: each core decodes a batch and runs the single-threaded session
        (shared by the threads) on it, as ``predictions_make`` does. Images per second."""

        def score(batch: np.ndarray) -> np.ndarray:
            return single.run(["logits"], {"image": batch})[0]

        started = time.perf_counter()
        done = 0
        for kept, _ in scored_batches(
            jpegs, load, score, batch_size=args.batch, workers=args.cores
        ):
            done += len(kept)
        return done / (time.perf_counter() - started)

    def end_to_end_spread() -> float:
        """For comparison, the layout it replaced: decoding threads keep two batches ready while
        one session spreads each batch over all cores. Images per second."""

        def run(decoded: Iterator[np.ndarray]) -> int:
            samples = list(decoded)
            spread.run(["logits"], {"image": np.stack(samples)})
            return len(samples)

        started = time.perf_counter()
        done = 0
        with ThreadPoolExecutor(max_workers=args.cores) as pool:
            ahead: deque[Iterator[np.ndarray]] = deque()
            for start in range(0, len(jpegs), args.batch):
                ahead.append(pool.map(load, jpegs[start : start + args.batch]))
                if len(ahead) > 2:
                    done += run(ahead.popleft())
            while ahead:
                done += run(ahead.popleft())
        return done / (time.perf_counter() - started)

    # Warm-up, then rounds that measure every figure in turn, so a burst of other load on the
    # machine touches the stages and the end-to-end runs alike.
    _, samples = stage_decode()
    single.run(["logits"], {"image": np.stack(samples[: args.batch])})
    spread.run(["logits"], {"image": np.stack(samples[: args.batch])})
    rounds = []
    for index in range(args.rounds):
        t_decode, samples = stage_decode()
        t_model = stage_model(samples)
        rate, spread_rate = end_to_end(), end_to_end_spread()
        limit = args.cores / (t_decode + t_model)
        rounds.append((t_decode, t_model, rate, spread_rate))
        print(
            f"round {index + 1}: t_decode {t_decode * 1000:5.2f} ms, t_model {t_model * 1000:5.2f} "
            f"ms, limit {limit:5.1f}/s, end2end {rate:5.1f}/s ({rate / limit:.1%}), "
            f"spread {spread_rate:5.1f}/s ({spread_rate / limit:.1%})"
        )

    # Best of the rounds for every figure: the least disturbed measurement of each.
    t_decode = min(r[0] for r in rounds)
    t_model = min(r[1] for r in rounds)
    rate = max(r[2] for r in rounds)
    spread_rate = max(r[3] for r in rounds)
    limit = args.cores / (t_decode + t_model)
    print(f"best of {args.rounds} rounds:")
    print(f"t_decode  {t_decode * 1000:7.2f} ms/image (draft decode + letterbox, 1 thread)")
    print(f"t_model   {t_model * 1000:7.2f} ms/image ({1 / t_model:.0f} images/s, 1 thread)")
    print(f"limit     {limit:7.1f} images/s  = {args.cores} / (t_decode + t_model)")
    print(f"end2end   {rate:7.1f} images/s  (scored_batches)")
    print(f"ratio     {rate / limit:7.1%} of the limit")
    print(
        f"spread    {spread_rate:7.1f} images/s  ({spread_rate / limit:.1%} of the limit: "
        "decoding threads feeding one session over all cores)"
    )
    ratios = sorted(r[2] / (args.cores / (r[0] + r[1])) for r in rounds)
    print(f"per-round ratios {', '.join(f'{x:.1%}' for x in ratios)}")


if __name__ == "__main__":
    main()
