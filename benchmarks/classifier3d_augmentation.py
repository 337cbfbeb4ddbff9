"""Does the 3D classifier learn with the classical (TorchIO) augmentation? Test balanced accuracy per variant.

    PYTHONPATH=. python benchmarks/classifier3d_augmentation.py none aug aug:translation=0:p_elastic=0 \
        [--config oasis_3d_quick] [--seeds 0,1] [--set classifier.epochs=10 ...]

Each variant is ``none`` (the seed's real training subjects as they are, the study's
``original`` arm) or ``aug`` (with the config's TorchIO augmentation, the ``classical``
arm), optionally followed by ``:key=value`` settings of the ``augmentation`` section.
Trains the study's classifier (the config's ``classifier`` section, ``--set`` as on the
study's command line) on each seed's split and prints per variant and seed the test
balanced accuracy, the best validation epoch, the training losses and the time, then the
mean over the seeds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from augmentor.utils.allocator import keep_large_buffers
from pipelines.common.classifier import TorchIOAugmentation, classification_metrics, predict, train_classifier
from pipelines.common.settings import AugmentationConfig
from pipelines.oasis_study.config import load_study_config
from pipelines.common.cli import parse_override
from pipelines.common.study_data import load_study_data, split_subjects
from pipelines.common.jobs import job_environment, job_seed


def augmentation(variant: str, base: AugmentationConfig) -> AugmentationConfig | None:
    """The augmentation settings of ``variant`` (``none``: None)."""
    name, *settings = variant.split(":")
    if name not in ("none", "aug"):
        raise SystemExit(f"unknown variant {variant!r}: expected none or aug[:key=value...]")
    if name == "none":
        return None
    return base.replace(**dict(parse_override(text) for text in settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--config", default="configs/oasis_3d_quick.yaml")
    parser.add_argument("--seeds", default="0", help="the study's repetitions (splits), comma-separated")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_large_buffers()
    config = load_study_config(args.config, dict(parse_override(text) for text in args.overrides) or None)
    data = load_study_data(config.data, progress=False)
    for variant in args.variants:
        settings = augmentation(variant, config.augmentation)
        scores = []
        for seed in (int(s) for s in args.seeds.split(",")):
            split = {k: torch.tensor(v) for k, v in
                     split_subjects(data.subject_ids, data.labels, seed, config.split).items()}
            method = "original" if settings is None else "classical"
            start = time.perf_counter()
            with job_environment(config, job_seed(seed, method)) as device:  # the study's arm of this seed
                augment = None if settings is None else TorchIOAugmentation(settings, data.image_size, job_seed(seed, method))
                trained = train_classifier(
                    data.images[split["train"]], data.labels[split["train"]],
                    data.images[split["val"]], data.labels[split["val"]],
                    config.classifier, seed=job_seed(seed, method), device=device, augment=augment,
                )
                pred = predict(trained.model, data.images[split["test"]], config.classifier.eval_batch_size, device)
            test = classification_metrics(data.labels[split["test"]].numpy(), pred, [0, 1])["balanced_accuracy"]
            scores.append(test)
            losses = [round(h["train_loss"], 3) for h in trained.history]
            print(f"{variant} seed {seed}: test BA {test:.3f}, best epoch {trained.best_epoch} "
                  f"(val BA {trained.best_val_balanced_accuracy:.3f}), train loss {losses[0]} -> {losses[-1]} "
                  f"(min {min(losses)}), {time.perf_counter() - start:.0f} s", flush=True)
        print(f"{variant}: mean test BA {np.mean(scores):.3f} over {len(scores)} seed(s)", flush=True)


if __name__ == "__main__":
    main()
