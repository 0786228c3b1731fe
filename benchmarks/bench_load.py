"""Loading a pretrained encoder: ``reprzoo.load(<shipped name>)`` against ``timm.create_model`` with a local
safetensors file (``pretrained_cfg_overlay=dict(file=...)``), side by side.

The timm side uses ``test_resnet`` (timm's own small ResNet, the closest of its ``test_*`` models in parameter
count to the shipped ``resnet_tiny_cifar`` encoder), with its randomly initialised weights saved once as
safetensors in a temporary folder: both sides build a small ResNet and read a few MB of safetensors from a local
disk, with no network.

Two measurements, interleaved (order reversed every other round), medians reported:

* ``warm``: in one process with torch, timm and reprzoo already imported, the time of one call (build the
  network, read and check the weights, load them, eval mode). reprzoo's call also resolves the name through the
  registry, parses config.json and checks the SHA-256 of the weights.
* ``cold``: a fresh ``python -c`` process doing the imports and one call, as a first use on a fresh install would;
  ``reprzoo+transform`` also builds ``enc.transform`` (its first use imports ``reprzoo.datamodules``);
  ``imports only`` is ``import torch, timm`` alone, the floor of both.

Run from the repository root: ``python benchmarks/bench_load.py --out bench_load.json`` (about a minute on a
shared 2-core CPU). ``REPRZOO_HOME`` is pointed at an empty folder so that only the shipped models are found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMM_MODEL = "test_resnet"


def _timm_file(folder: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(TIMM_MODEL, pretrained=False, num_classes=0)  # an encoder, like reprzoo.load's
    path = folder / f"{TIMM_MODEL}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _timm_load(path: Path):
    import timm

    return timm.create_model(TIMM_MODEL, pretrained=True, num_classes=0, pretrained_cfg_overlay=dict(file=str(path))).eval()


def _reprzoo_load(name: str):
    import reprzoo

    return reprzoo.load(name)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="simsiam-tinyresnet-digits", help="a shipped zoo model")
    parser.add_argument("--warm-repeats", type=int, default=21)
    parser.add_argument("--cold-repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    os.environ["REPRZOO_HOME"] = str(tmp / "empty-home")
    import reprzoo
    from reprzoo.zoo.api import resolve

    timm_file = _timm_file(tmp)
    zoo_folder = resolve(args.name).folder
    enc, tm = _reprzoo_load(args.name), _timm_load(timm_file)  # warmup (first calls fill caches)
    sizes = {
        "reprzoo": {
            "encoder_params": sum(p.numel() for p in enc.parameters()),
            "file_bytes": (zoo_folder / "model.safetensors").stat().st_size,
        },
        "timm": {"encoder_params": sum(p.numel() for p in tm.parameters()), "file_bytes": timm_file.stat().st_size},
    }

    candidates = {"reprzoo": lambda: _reprzoo_load(args.name), "timm": lambda: _timm_load(timm_file)}
    warm: dict[str, list[float]] = {k: [] for k in candidates}
    for i in range(args.warm_repeats):
        for key in list(candidates) if i % 2 == 0 else list(candidates)[::-1]:
            warm[key].append(_time(candidates[key]))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cold_code = {
        "reprzoo": f"import reprzoo; reprzoo.load({args.name!r})",
        "reprzoo+transform": f"import reprzoo; reprzoo.load({args.name!r}).transform",
        "imports only": "import torch, timm",
        "timm": f"import timm; timm.create_model({TIMM_MODEL!r}, pretrained=True, num_classes=0, "
        f"pretrained_cfg_overlay=dict(file={str(timm_file)!r})).eval()",
    }
    cold: dict[str, list[float]] = {k: [] for k in cold_code}
    for i in range(args.cold_repeats):
        for key in list(cold_code) if i % 2 == 0 else list(cold_code)[::-1]:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", cold_code[key]], env=env, check=True, capture_output=True)
            cold[key].append(time.perf_counter() - start)

    results = {
        "name": args.name,
        "timm_model": TIMM_MODEL,
        "sizes": sizes,
        "warm_ms_median": {k: 1000 * statistics.median(v) for k, v in warm.items()},
        "warm_ms_min": {k: 1000 * min(v) for k, v in warm.items()},
        "cold_s_median": {k: statistics.median(v) for k, v in cold.items()},
        "repeats": {"warm": args.warm_repeats, "cold": args.cold_repeats},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "reprzoo": reprzoo.__version__,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
    }
    print(f"{'':18s} {'params':>10s} {'file MB':>8s} {'warm ms (median)':>17s} {'cold s (median)':>16s}")
    for key in cold_code:
        size = sizes.get(key.split("+")[0])
        warm_ms = f"{results['warm_ms_median'][key]:>17.1f}" if key in warm else f"{'-':>17s}"
        params = f"{size['encoder_params']:>10,d} {size['file_bytes'] / 1e6:>8.2f}" if size else f"{'-':>10s} {'-':>8s}"
        print(f"{key:18s} {params} {warm_ms} {results['cold_s_median'][key]:>16.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
