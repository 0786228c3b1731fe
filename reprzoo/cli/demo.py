"""``reprzoo demo`` (``make demo``): the offline main job.

Trains SimSiam on scikit-learn's digits with the shipped ``digits/simsiam`` recipe, measures the kNN top-1 of
the same encoder at random initialisation and after training, and says where the checkpoint, TensorBoard logs
and metrics.json were written.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from reprzoo.atomic import atomic_write_text
from reprzoo.cli.training import cli_main

KNN = "val/knn_top1"


def run_demo(epochs: int | None = None, root_dir: str = "runs", recipe: str = "digits/simsiam") -> int:
    console = Console()
    args = ["--config", recipe, f"--trainer.logger.init_args.save_dir={root_dir}"]  # run=False: no subcommand
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    cli = cli_main(args, run=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule

    console.rule(f"[bold]reprzoo demo: {type(model).__name__} on {type(data).__name__}")
    console.print("kNN top-1 of the encoder at random initialisation ...")
    baseline = trainer.validate(model, datamodule=data, verbose=False)[0][KNN]
    trainer.fit(model, datamodule=data)
    trained = trainer.validate(model, datamodule=data, verbose=False)[0][KNN]

    run_dir = Path(trainer.log_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    metrics["baseline/random_init_knn_top1"] = baseline
    atomic_write_text(metrics_path, json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")

    console.rule("[bold]result")
    console.print(f"kNN top-1 (k={model.hparams.knn_k}) on the digits test split:")
    console.print(f"  random init : {baseline:.3f}")
    console.print(f"  trained     : {trained:.3f}  ({trained - baseline:+.3f})")
    checkpoint = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else None
    console.print(f"checkpoint    : {checkpoint}")
    console.print(f"TensorBoard   : tensorboard --logdir {run_dir}")
    console.print(f"metrics.json  : {metrics_path}")
    return _push_and_load_back(console, run_dir, model, data)


def _push_and_load_back(console: Console, run_dir: Path, model, data, name: str = "simsiam-tinyresnet-digits.demo") -> int:
    """The zoo step: push the run to the local hub, load it back by name, check the embeddings are the model's."""
    import torch

    import reprzoo

    result = reprzoo.zoo.push(run_dir, name)
    encoder = reprzoo.load(name, device=model.device)
    images = next(iter(data.val_dataloader()[1]))[0][:16].to(model.device)
    with torch.no_grad():
        loaded, trained = encoder.embed(images), model.eval().embed(images)
    # the trained model may run in channels-last (the default on CPU and CUDA), the loaded encoder contiguous: the
    # same weights, convolutions summed in another order, so the same embeddings to float32 rounding
    same = torch.allclose(loaded, trained, rtol=1e-5, atol=1e-5)
    difference = (loaded - trained).abs().max().item() if loaded.numel() else 0.0
    verdict = "identical" if difference == 0 else f"identical up to float32 rounding (max difference {difference:.1e})"
    verdict = verdict if same else "DIFFERENT"
    console.print(f"zoo model     : {name} revision {result.revision} in {result.target}")
    console.print(f"loaded back   : reprzoo.load({name!r}) -> {verdict} embeddings")
    return 0 if same else 1
