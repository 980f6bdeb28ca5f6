"""Seconds and peak memory of the classical engine for one object, on this machine.

    python scripts/benchmark.py [--sizes 512 1024 2048] [--threads 2] [--repeats 3]
    python scripts/benchmark.py --against REV      # the same, side by side with git revision REV
    python scripts/benchmark.py --filters          # the filters kornia has vs the ones kept by hand
    python scripts/benchmark.py --automatic [--engines classical,refined]   # automatic mode, example photos at 1024x1024
    python scripts/benchmark.py --automatic --photos DIR --min-objects 3   # automatic mode, DIR's photos with 3+ objects
    python scripts/benchmark.py --automatic --precisions float32,auto      # the network passes in each precision
    python scripts/benchmark.py --engines classical,refined [--large] [--against REV]   # engines side by side
    python scripts/benchmark.py --ratio classical,refined [--sizes 1024] [--repeats 7]   # time ratio, one process

Each size runs in a fresh process so peak memory (max RSS) is its own; "peak MB" is the
process's peak minus what it held after imports and input creation. The scene is the
synthetic one of the tests (a soft-edged object with a cast shadow on a textured ground),
scaled to the size; the mask is rough (object grown by 3%).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the checkout this script lies in, not whatever liwi_core the environment installed (an editable
# install points at one checkout, and a git worktree is another), unless a PYTHONPATH entry holds a
# liwi_core: that is how ``--against`` runs another revision's code through this script
if not any((Path(entry) / "liwi_core").is_dir() for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry):
    sys.path.insert(0, str(ROOT))


def _median(times: list[float]) -> float:
    """The middle run of ``times`` (the upper middle one for an even count)."""
    return sorted(times)[len(times) // 2]


def _engine(name: str | None):
    """``create(name)``; ``NAME:KEY=VALUE`` sets one of the engine's settings (a JSON value, e.g.
    ``refined:refine_edges=false``)."""
    from liwi_core.engines import create

    if name is None:
        return None
    engine, _, setting = name.partition(":")
    if not setting:
        return create(engine)
    key, _, value = setting.partition("=")
    return create(engine, **{key: json.loads(value)})


def run_large(threads: int, engine: str | None = None) -> dict:
    """A 6000x4000 photo-sized input with a 2500x2000 object: must fit well inside 24 GB."""
    import torch

    from liwi_core.decompose import decompose

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 4000, 6000, generator=g) * 0.2 + 0.4
    mask = torch.zeros(1, 1, 4000, 6000)
    mask[..., 1000:3000, 2000:4500] = 1.0
    chosen = _engine(engine)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    decompose(image, mask, chosen)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_mb": peak / 1024.0, "peak_extra_mb": (peak - base) / 1024.0}


def run_one(size: int, threads: int, repeats: int, engine: str | None = None) -> dict:
    import torch

    from liwi_core.decompose import decompose
    from liwi_core.metrics import recompose_psnr as psnr
    from liwi_core.synthetic import scene

    torch.set_num_threads(threads)
    image, _, _, _, rough = scene(size, size)
    chosen = _engine(engine)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        stack = decompose(image, rough, chosen)
        times.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "seconds_median": _median(times), "seconds_min": min(times),
            "peak_mb": (peak - base) / 1024.0, "psnr_db": psnr(stack.composite(), image), "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large", action="store_true", help="also time a 6000x4000 photo")
    parser.add_argument("--against", metavar="REV", help="also run git revision REV, alternating with this tree")
    parser.add_argument("--filters", action="store_true", help="time kornia's filters against the hand-written ones")
    parser.add_argument("--automatic", action="store_true", help="time automatic mode (no mask) at 1024x1024")
    parser.add_argument("--photos", metavar="DIR", help="with --automatic: time the photos of DIR instead of the "
                                                        "example photos (each resized to 1024x1024)")
    parser.add_argument("--min-objects", type=int, default=1, help="with --photos: time only photos where "
                                                                    "automatic mode finds at least this many objects")
    parser.add_argument("--limit", type=int, default=4, help="with --photos: at most this many photos")
    parser.add_argument("--engines", help="comma-separated engines, each size run for each side by side "
                                          "(alternating); default: the default engine")
    parser.add_argument("--ratio", metavar="A,B", help="time engine B against engine A in one process, runs "
                                                        "interleaved (A, B, A, B, ...), so the machine's drift "
                                                        "between processes does not enter the ratio")
    parser.add_argument("--precisions", help="with --automatic: comma-separated network precisions (auto, float32, "
                                             "bfloat16), each run side by side; default: the current setting")
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.filters:
        time_filters(args.threads)
        return
    if args.ratio:
        time_ratio(args.ratio.split(","), args.sizes, args.threads, args.repeats)
        return
    if args.automatic:
        photos = None
        if args.photos:
            photos = _photos_with_objects(Path(args.photos), args.min_objects, args.limit, args.threads)
        time_automatic(args.threads, args.repeats, args.engines.split(",") if args.engines else None, photos,
                       args.precisions.split(",") if args.precisions else None)
        return
    if args.engines:
        with _trees(args.against) as trees:
            compare_engines(args, trees)
        return
    if args.large:
        print(json.dumps(run_large(args.threads, args.engine)))
        return
    if args.one:
        print(json.dumps(run_one(args.one, args.threads, args.repeats, args.engine)))
        return
    with _trees(args.against) as trees:
        rows = []
        for size in args.sizes:
            for name, tree in trees.items():  # alternating, so both see the same machine load
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(size), "--threads",
                                      str(args.threads), "--repeats", str(args.repeats)], capture_output=True,
                                     text=True, check=True, cwd=tree, env=_tree_env(tree))
                rows.append({"tree": name, **json.loads(out.stdout.strip().splitlines()[-1])})
    print(f"| code | size | seconds (median of {args.repeats}) | peak extra memory (MB) | recompose PSNR (dB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tree']} | {r['size']}x{r['size']} | {r['seconds_median']:.2f} | {r['peak_mb']:.0f} "
              f"| {r['psnr_db']:.1f} |")


@contextlib.contextmanager
def _trees(against: str | None):
    """``{name: checkout}``: this tree, and with ``against`` that git revision in a temporary
    worktree (removed afterwards)."""
    trees = {"this tree": ROOT}
    with contextlib.ExitStack() as stack:
        if against:
            other = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), against], cwd=ROOT, check=True)
            stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(other)], cwd=ROOT)
            trees[against] = other
        yield trees


def _tree_env(tree: Path) -> dict:
    """This process's environment (``LIWI_NETWORK_PRECISION`` among it), importing ``tree``'s ``liwi_core``."""
    return dict(os.environ, PYTHONPATH=str(tree))


def compare_engines(args, trees: dict) -> None:
    """Each size (and the 6000x4000 photo with ``--large``) for each engine, and with ``--against``
    for each tree, alternating, each run in its own process so its peak memory is its own."""
    engines = args.engines.split(",")
    rows = []
    sizes = [("large", None)] if args.large else [(str(s), s) for s in args.sizes]
    for label, size in sizes:
        for engine in engines:
            for name, tree in trees.items():
                cmd = [sys.executable, str(Path(__file__).resolve()), "--engine", engine, "--threads", str(args.threads)]
                cmd += ["--large"] if size is None else ["--one", str(size), "--repeats", str(args.repeats)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tree, env=_tree_env(tree))
                result = json.loads(out.stdout.strip().splitlines()[-1])
                seconds = result.get("seconds_median", result.get("seconds"))
                peak = result.get("peak_mb", result.get("peak_extra_mb"))
                rows.append((name, engine, "6000x4000" if size is None else f"{size}x{size}", seconds, peak))
    print("| code | engine | size | seconds | peak extra memory (MB) |" if len(trees) > 1 else
          "| engine | size | seconds | peak extra memory (MB) |")
    print("|---|---|---|---|---|" if len(trees) > 1 else "|---|---|---|---|")
    for name, engine, size, seconds, peak in rows:
        print(f"| {name} " * (len(trees) > 1) + f"| {engine} | {size} | {seconds:.2f} | {peak:.0f} |")


def time_ratio(engines: list[str], sizes: list[int], threads: int, repeats: int) -> None:
    """Seconds of two engines on the benchmark scene, in one process with their runs interleaved
    after a warm-up of each: the ratio of the second's median to the first's, and the range of
    the ratios of consecutive pairs. Peak memory needs a process each (``--engines``)."""
    import torch

    from liwi_core.decompose import decompose
    from liwi_core.synthetic import scene

    if len(engines) != 2:
        raise SystemExit(f"--ratio takes two engines, e.g. classical,refined (got {','.join(engines)})")
    torch.set_num_threads(threads)
    chosen = [_engine(name) for name in engines]
    print(f"| size | {engines[0]} (s, median of {repeats}) | {engines[1]} (s, median of {repeats}) | ratio of medians "
          "| ratio per pair (min-max) |")
    print("|---|---|---|---|---|")
    for size in sizes:
        image, _, _, _, rough = scene(size, size)
        times: list[list[float]] = [[], []]
        for engine in chosen:
            decompose(image, rough, engine)
        for _ in range(repeats):
            for k, engine in enumerate(chosen):
                t = time.perf_counter()
                decompose(image, rough, engine)
                times[k].append(time.perf_counter() - t)
        first, second = (_median(t) for t in times)
        pairs = [b / a for a, b in zip(*times)]
        print(f"| {size}x{size} | {first:.2f} | {second:.2f} | {second / first:.2f} | "
              f"{min(pairs):.2f}-{max(pairs):.2f} |")


def _photos_with_objects(folder: Path, min_objects: int, limit: int, threads: int) -> list[Path]:
    """The first ``limit`` photos of ``folder`` (sorted by name) in which automatic mode, on the
    photo resized to 1024x1024, finds at least ``min_objects`` objects."""
    import torch

    from liwi_core.benchmark_scenes import IMAGE_EXTENSIONS
    from liwi_core.filters import resize
    from liwi_core.imageio import load_image
    from liwi_core.proposals import find_objects

    if not folder.is_dir():
        sys.exit(f"no such folder: {folder}")
    torch.set_num_threads(threads)
    chosen = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        image = resize(load_image(path)[:, :3], (1024, 1024))
        if len(find_objects(image).masks) >= min_objects:
            chosen.append(path)
            if len(chosen) == limit:
                break
    if not chosen:
        sys.exit(f"no photo in {folder} where automatic mode finds {min_objects} or more objects")
    return chosen


def time_automatic(threads: int, repeats: int, engines: list[str] | None = None, photos: list[Path] | None = None,
                   precisions: list[str] | None = None) -> None:
    """Automatic mode on each example photo (or each of ``photos``) resized to 1024x1024: finding
    the objects, and the whole decomposition (finding included) with each of ``engines``
    (default: the default engine) in each of the network ``precisions``
    (:func:`~liwi_core.precision.set_network_precision`; default: the current setting), run
    alternating; median of ``repeats`` after one warm-up run that loads the networks. Finding is
    timed in the first precision; the objects column gives each precision's count where they differ."""
    import torch

    from liwi_core.decompose import decompose
    from liwi_core.engines import DEFAULT_ENGINE
    from liwi_core.filters import resize
    from liwi_core.imageio import load_image
    from liwi_core.precision import network_precision, set_network_precision, using_precision
    from liwi_core.proposals import find_objects

    torch.set_num_threads(threads)
    names = engines or [DEFAULT_ENGINE]
    chosen = [_engine(name) for name in names]
    settings = precisions or [None]
    runs = [(engine, name, setting) for setting in settings for engine, name in zip(chosen, names)]

    def use(setting):
        if setting is not None:
            set_network_precision(setting)

    def label(name, setting):
        if setting is None:
            return name
        with using_precision(setting):
            return f"{name}, {setting} ({str(network_precision()).removeprefix('torch.')})"

    columns = " | ".join(f"{label(name, setting)}: whole decomposition (s, median of {repeats})"
                         for _, name, setting in runs)
    print(f"| photo (1024x1024) | objects | finding (s) | {columns} |")
    print("|---|---|---|" + "---|" * len(runs))
    paths = photos or [ROOT / "example_images" / f"{name}.png" for name in ("coffee", "chelsea", "astronaut", "rocket")]
    for path in paths:
        name = path.stem
        image = resize(load_image(path)[:, :3], (1024, 1024))
        use(settings[0])
        find_objects(image)
        counts = {}
        for engine, _, setting in runs:
            use(setting)
            counts[setting] = len(decompose(image, None, engine).layers)
        finding, whole = [], [[] for _ in runs]
        for _ in range(repeats):
            use(settings[0])
            t = time.perf_counter()
            find_objects(image)
            finding.append(time.perf_counter() - t)
            for times, (engine, _, setting) in zip(whole, runs):
                use(setting)
                t = time.perf_counter()
                decompose(image, None, engine)
                times.append(time.perf_counter() - t)
        cells = " | ".join(f"{_median(times):.2f}" for times in whole)
        objects = " / ".join(str(counts[s]) for s in settings) if len(set(counts.values())) > 1 else str(counts[settings[0]])
        print(f"| {name} | {objects} | {_median(finding):.2f} | {cells} |")


def time_filters(threads: int) -> None:
    """Milliseconds (median of 3) of each filter: kornia's next to the hand-written one it replaced
    or that was kept, at 512 and 2048 px."""
    import kornia
    import torch
    import torch.nn.functional as F

    from liwi_core import filters

    torch.set_num_threads(threads)

    def ms(fn) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * _median(times)

    def separable_gaussian(x, sigma):  # the hand-written blur kornia replaced
        radius = max(1, int(3.0 * sigma + 0.5))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = (k / k.sum()).view(1, 1, 1, -1).expand(x.shape[1], 1, 1, -1)
        y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k, groups=x.shape[1])
        return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.transpose(-1, -2), groups=x.shape[1])

    print("| filter | size | kornia (ms) | by hand (ms) | used |")
    print("|---|---|---|---|---|")
    for size in (512, 2048):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, size, size, generator=g)
        m = (torch.rand(1, 1, size, size, generator=g) > 0.5).float()
        for r in (3, 15):
            square = torch.ones(2 * r + 1, 2 * r + 1)
            print(f"| dilation r={r} | {size} | {ms(lambda: kornia.morphology.dilation(m, square)):.0f} "
                  f"| {ms(lambda: filters.dilate(m, r)):.0f} | by hand |")
        for sigma in (1.0, 4.0):
            print(f"| gaussian sigma={sigma} | {size} | {ms(lambda: filters.gaussian_blur(x, sigma)):.0f} "
                  f"| {ms(lambda: separable_gaussian(x, sigma)):.0f} | kornia |")
        for r in (1, 4):
            theirs = ms(lambda: kornia.filters.box_blur(x, 2 * r + 1, separable=True))
            print(f"| box blur r={r} | {size} | {theirs:.0f} | {ms(lambda: filters.box_blur(x, r)):.0f} | by hand (OpenCV) |")
        print(f"| guided filter r=4 | {size} | {ms(lambda: kornia.filters.guided_blur(x, m, 9, 1e-3)):.0f} "
              f"| {ms(lambda: filters.guided_filter(x, m, 4, 1e-3)):.0f} | by hand (its box blur) |")


if __name__ == "__main__":
    main()
