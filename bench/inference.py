"""Bulk-inference throughput of the EfficientNet-Lite0 backbone on 1920x1080 JPEGs.

    python bench/inference.py [-n 256] [--batch 8] [--cores N] [--rounds 20] [--slice 64]

Builds the backbone in memory (as install_backbone does), makes N unique 1920x1080 JPEGs
(crops and rescales of scikit-image's sample photos with noise, quality 90) in memory, then
measures in the same run:

* t_decode: draft-mode decode + letterbox + normalise of one image, one thread;
* t_model: the model on pre-decoded tensors, per image, batches of ``--batch``, one thread;
* both again per image per core with every core running that stage at once (on this 2-core
  virtual machine two cores together do not reach twice one core's rate: memory, caches and the
  host's other guests are shared);
* the end-to-end rate of the production path (``inference.pipeline.scored_batches``, as
  ``predictions_make`` runs it: each core decodes a batch of ``--batch`` images and runs the
  single-threaded session on it), and beside it the older layout (decoding threads feeding
  one session that spreads each batch over all cores).

On a CPU, decode and model compete for the same cores, so the ceiling is
cores / (t_decode + t_model) images/s; the script prints that limit from the one-core stage
costs and from the every-core ones, and the ratio the end-to-end rate reaches of each. Every
figure is measured once per round, in turn, on the round's slice of the images (rounds are a few
seconds long; the machine's noise comes in bursts of about that length). The summary gives the
ratio of the means over all rounds and the median of the per-round ratios.
Then the bulk-identification job itself (``inference.bulk.identification_run``, as the worker
runs it: pages of the library read from the database, predictions written back) over the JPEGs
stored in a scratch library (SQLite in a temporary folder, removed afterwards), alternated with
``scored_batches`` over the same stored files: what the job costs beyond the pipeline.
It ends with the model alone run by ``--cores`` one-thread sessions side by side, at the bulk
batch size and at 32, against one session: what the cores lose to each other in the model.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path(tempfile.mkdtemp(prefix="loupe-bench-inference-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ["LOUPE_DATA_DIR"] = str(SCRATCH)
os.environ.pop("DATABASE_URL", None)  # the job section writes a scratch library, never a real one
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


@dataclass
class Round:
    """One round's figures: seconds per image per core, and images per second."""

    STAGES: ClassVar = ("t_decode", "t_model", "t_decode_all", "t_model_all")
    RATES: ClassVar = ("rate", "spread")

    cores: int
    t_decode: float
    t_model: float
    t_decode_all: float
    t_model_all: float
    rate: float
    spread: float

    @property
    def limit_one(self) -> float:
        return self.cores / (self.t_decode + self.t_model)

    @property
    def limit_every(self) -> float:
        return self.cores / (self.t_decode_all + self.t_model_all)

    def ratio_one(self) -> float:
        return self.rate / self.limit_one

    def ratio_every(self) -> float:
        return self.rate / self.limit_every


def job_against_pipeline(jpegs: list[bytes], model: bytes, *, repeats: int) -> None:
    """The identification job over the JPEGs stored in the scratch library, alternated with
    ``scored_batches`` over the same stored files; prints both rates and their ratio."""
    from django.core.management import call_command

    from curation.models import Image
    from curation.services.imports import Destination, upload_import
    from inference import backbone
    from inference.bulk import Scope, identification_run
    from inference.models import OutputKind, Prediction
    from inference.pipeline import BATCH_SIZE, scored_batches
    from inference.preprocessing import PreprocessSpec, stored_input
    from inference.runtime import run_batches
    from inference.services import model_version_register

    call_command("migrate", verbosity=0)
    upload_import(
        files=[(f"{index}.jpg", io.BytesIO(data)) for index, data in enumerate(jpegs)],
        destination=Destination(from_folders=False),
        actor=None,
        batch=None,
    )
    version = model_version_register(
        onnx_data=model,
        labels=backbone.imagenet_labels(),
        name=backbone.NAME,
        actor=None,
        spec=backbone.SPEC,
        output_kind=OutputKind.LOGITS,
    ).version
    images = list(Image.objects.only("pk", "sha256", "extension").order_by("pk"))
    spec = PreprocessSpec.of(version)

    def pipeline() -> float:
        started = time.perf_counter()
        done = sum(
            len(batch)
            for batch, _ in scored_batches(
                images,
                lambda image: stored_input(image, spec),
                lambda samples: run_batches(version, samples, batch_size=BATCH_SIZE, threads=1),
                batch_size=BATCH_SIZE,
            )
        )
        return done / (time.perf_counter() - started)

    def job() -> float:
        Prediction.objects.all().delete()
        started = time.perf_counter()
        result = identification_run(version=version, scope=Scope())
        assert result["written"] == len(images), result
        return len(images) / (time.perf_counter() - started)

    pipeline()  # warm the session and the page cache
    rates: list[tuple[float, float]] = []
    for index in range(repeats):  # alternate which goes first
        if index % 2:
            job_rate = job()
            pipeline_rate = pipeline()
        else:
            pipeline_rate = pipeline()
            job_rate = job()
        rates.append((pipeline_rate, job_rate))
    pipeline_rate = len(rates) / sum(1 / p for p, _ in rates)
    job_rate = len(rates) / sum(1 / j for _, j in rates)
    print(
        f"job       {job_rate:7.1f} images/s  (identification_run over {len(images)} stored "
        f"images, {repeats} runs) = {job_rate / pipeline_rate:.1%} of scored_batches over the "
        f"same files ({pipeline_rate:.1f}/s); per run "
        + ", ".join(f"{j / p:.0%}" for p, j in rates)
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=None, help="default: the bulk batch size")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--slice", type=int, default=64, help="images per round")
    parser.add_argument("--job-repeats", type=int, default=4, help="runs of the job and pipeline")
    args = parser.parse_args()

    import django

    django.setup()
    import numpy as np
    import onnxruntime as ort

    from inference import backbone
    from inference.pipeline import BATCH_SIZE, scored_batches
    from inference.preprocessing import load_input
    from inference.runtime import session_options

    args.batch = args.batch or BATCH_SIZE
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

    def stage_decode(images: list[bytes]) -> tuple[float, list[np.ndarray]]:
        """Decode + preprocess, one thread: seconds per image, and the samples."""
        started = time.perf_counter()
        samples = [load(data) for data in images]
        return (time.perf_counter() - started) / len(images), samples

    def stage_model(samples: list[np.ndarray], size: int | None = None) -> float:
        """The model alone, one thread, on decoded tensors: seconds per image."""
        size = size or args.batch
        batches = [np.stack(samples[i : i + size]) for i in range(0, len(samples), size)]
        started = time.perf_counter()
        for batch in batches:
            single.run(["logits"], {"image": batch})
        return (time.perf_counter() - started) / len(samples)

    def model_side_by_side(samples: list[np.ndarray], size: int) -> float:
        """The model alone in ``--cores`` threads at once, each on its share of the samples
        with the one-thread session: seconds per image."""
        shares = [samples[i :: args.cores] for i in range(args.cores)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.cores) as pool:
            list(pool.map(lambda share: stage_model(share, size), shares))
        return (time.perf_counter() - started) / len(samples)

    def end_to_end(images: list[bytes]) -> float:
        """The production path: each core decodes a batch and runs the single-threaded session
        (shared by the threads) on it, as ``predictions_make`` does. Images per second."""

        def score(batch: np.ndarray) -> np.ndarray:
            return single.run(["logits"], {"image": batch})[0]

        started = time.perf_counter()
        done = 0
        for kept, _ in scored_batches(
            images, load, score, batch_size=args.batch, workers=args.cores
        ):
            done += len(kept)
        return done / (time.perf_counter() - started)

    def end_to_end_spread(images: list[bytes]) -> float:
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
            for start in range(0, len(images), args.batch):
                ahead.append(pool.map(load, images[start : start + args.batch]))
                if len(ahead) > 2:
                    done += run(ahead.popleft())
            while ahead:
                done += run(ahead.popleft())
        return done / (time.perf_counter() - started)

    def stage_on_every_core(images: list[bytes]) -> tuple[float, float]:
        """Both stages with every core running the same stage at once (each thread on its share,
        as in the end-to-end run): seconds per image per core, decode and model."""
        shares = [images[i :: args.cores] for i in range(args.cores)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.cores) as pool:
            decoded = list(pool.map(lambda share: [load(data) for data in share], shares))
        t_decode = (time.perf_counter() - started) / len(images) * args.cores
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.cores) as pool:
            list(pool.map(stage_model, decoded))
        t_model = (time.perf_counter() - started) / len(images) * args.cores
        return t_decode, t_model

    # Warm-up, then short rounds, each measuring every figure on its own slice of the images
    # within a few seconds, so a burst of other load on the machine touches the stages and the
    # end-to-end runs of a round alike; the order alternates between rounds.
    _, samples = stage_decode(jpegs)
    single.run(["logits"], {"image": np.stack(samples[: args.batch])})
    spread.run(["logits"], {"image": np.stack(samples[: args.batch])})
    rounds: list[Round] = []
    for index in range(args.rounds):
        start = index * args.slice % len(jpegs)
        images = (jpegs + jpegs)[start : start + args.slice]
        if index % 2:
            rate, spread_rate = end_to_end(images), end_to_end_spread(images)
        t_decode, samples = stage_decode(images)
        t_model = stage_model(samples)
        t_decode_all, t_model_all = stage_on_every_core(images)
        if not index % 2:
            rate, spread_rate = end_to_end(images), end_to_end_spread(images)
        figures = Round(args.cores, t_decode, t_model, t_decode_all, t_model_all, rate, spread_rate)
        rounds.append(figures)
        print(
            f"round {index + 1:2d}: one core {t_decode * 1000:5.2f} + {t_model * 1000:5.2f} ms, "
            f"every core {t_decode_all * 1000:5.2f} + {t_model_all * 1000:5.2f} ms; "
            f"end2end {rate:5.1f}/s = {rate / figures.limit_one:.1%} / "
            f"{rate / figures.limit_every:.1%}, spread {spread_rate:5.1f}/s"
        )

    # Over all rounds: every figure averaged over the same stretch of time, so a burst of
    # other load on the (shared, virtual) machine weighs on the limits and the rates alike.
    # Every end-to-end run scores as many images, so the mean rate is images over total time.
    mean = Round(
        args.cores,
        *(statistics.mean(getattr(r, name) for r in rounds) for name in Round.STAGES),
        *(1 / statistics.mean(1 / getattr(r, name) for r in rounds) for name in Round.RATES),
    )
    print(f"mean of {args.rounds} rounds of {args.slice} images:")
    print(
        f"t_decode  {mean.t_decode * 1000:7.2f} ms/image on one core, "
        f"{mean.t_decode_all * 1000:.2f} per core with every core decoding"
    )
    print(
        f"t_model   {mean.t_model * 1000:7.2f} ms/image on one core ({1 / mean.t_model:.0f}/s), "
        f"{mean.t_model_all * 1000:.2f} per core with every core running it"
    )
    print(f"end2end   {mean.rate:7.1f} images/s  (scored_batches)")
    for name, limit, ratio in (
        ("one core", mean.limit_one, Round.ratio_one),
        ("every core", mean.limit_every, Round.ratio_every),
    ):
        ratios = sorted(ratio(r) for r in rounds)
        print(
            f"limit     {limit:7.1f} images/s  = {args.cores} / (t_decode + t_model), stage costs "
            f"on {name}: end2end is {mean.rate / limit:.1%} of it; per round median "
            f"{statistics.median(ratios):.1%} ({ratios[0]:.0%}-{ratios[-1]:.0%})"
        )
    print(
        f"spread    {mean.spread:7.1f} images/s  ({mean.spread / mean.limit_one:.1%} / "
        f"{mean.spread / mean.limit_every:.1%}: decoding threads feeding one session over all "
        "cores)"
    )

    job_against_pipeline(jpegs, model, repeats=args.job_repeats)

    print(f"model alone, {args.cores} one-thread sessions side by side vs one (3 times):")
    _, samples = stage_decode(jpegs)
    scaling: dict[int, list[float]] = {size: [] for size in sorted({args.batch, 32})}
    for _ in range(3):
        for size, gains in scaling.items():
            gains.append(stage_model(samples, size) / model_side_by_side(samples, size))
    for size, gains in scaling.items():
        print(f"batch {size:3d}: {', '.join(f'{x:.2f}x' for x in gains)}")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)
