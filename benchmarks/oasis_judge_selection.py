"""Model selection of the OASIS classifier on a split where it collapses in eval mode.

Run:  python benchmarks/oasis_judge_selection.py [--config configs/oasis_quick.yaml] [--seeds 1]
      [--cache-dir DIR]

For each seed, the study's fidelity judge (the classifier trained on that seed's
real training subjects, minority class oversampled, seed ``job_seed(seed,
"fidelity")``, exactly as the generate job trains it) under the selection
options of :class:`pipelines.common.settings.ClassifierConfig`:

* ``first``: the kept epoch is the first with the best validation balanced accuracy (the default);
* ``loss-tie``: ties broken by the lower validation loss;
* ``bn``: BatchNorm statistics recomputed over the training images before each validation;
* ``bn+loss-tie``: both.

Per option it prints the kept epoch, its validation balanced accuracy, the
number of epochs at validation balanced accuracy 0.5 (a single class predicted, or chance), the test
balanced accuracy in eval mode, and (diagnostic only) the test balanced accuracy
with BatchNorm in training mode (batch statistics of the test images).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pipelines.common.classifier import classification_metrics, predict
from pipelines.oasis_study.config import load_study_config
from pipelines.common.study_data import load_study_data, split_subjects
from pipelines.common.jobs import job_environment, job_seed
from pipelines.oasis_study.jobs import train_judge

OPTIONS = {
    "first": {},
    "loss-tie": {"selection": "balanced_accuracy_then_loss"},
    "bn": {"recalibrate_batchnorm": True},
    "bn+loss-tie": {"recalibrate_batchnorm": True, "selection": "balanced_accuracy_then_loss"},
}


def train_mode_balanced_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Balanced accuracy with BatchNorm normalising by the batch's own statistics (one batch of all images)."""
    model.train()
    with torch.no_grad():
        prediction = model(images).argmax(1).numpy()
    model.eval()
    return classification_metrics(labels.numpy(), prediction)["balanced_accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/oasis_quick.yaml"))
    parser.add_argument("--seeds", default="1", help="comma-separated seeds (default: 1, the one that collapses)")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args()
    config = load_study_config(args.config)
    data = load_study_data(config.data, args.cache_dir, progress=False)
    print(f"{args.config}: {len(data.labels)} images; judge seed per split = job_seed(seed, 'fidelity')")
    print("| seed | option | kept epoch | val BA | epochs at val BA 0.5 | test BA (eval) | test BA (train-mode BN) "
          "| s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for seed in (int(s) for s in args.seeds.split(",")):
        split = {k: torch.tensor(v) for k, v in split_subjects(data.subject_ids, data.labels, seed,
                                                              config.split).items()}
        for name, options in OPTIONS.items():
            variant = config.replace(classifier=config.classifier.replace(**options), progress=False)
            start = time.perf_counter()
            with job_environment(variant, job_seed(seed, "fidelity")) as device:
                trained = train_judge(variant, data, split, seed, device)
            single = sum(1 for r in trained.history if r["val_balanced_accuracy"] == 0.5)
            test_x, test_y = data.images[split["test"]], data.labels[split["test"]]
            test = classification_metrics(test_y.numpy(), predict(trained.model, test_x, 500, device))
            print(f"| {seed} | {name} | {trained.best_epoch} | {trained.best_val_balanced_accuracy:.3f} | "
                  f"{single} / {len(trained.history)} | {test['balanced_accuracy']:.3f} | "
                  f"{train_mode_balanced_accuracy(trained.model, test_x, test_y):.3f} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
