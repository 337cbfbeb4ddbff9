"""Re-score a generation benchmark's samples in the features of a domain CNN trained longer, with its accuracy.

    PYTHONPATH=. python benchmarks/domain_recheck.py RUN_DIR [--config mnist_sampling_quick] [--epochs 40]

The benchmark's FD_domain, precision / recall, coverage and class counts are measured in
the features of its domain CNN (``metrics.domain_epochs`` epochs on the training images).
When that CNN is weak, are the rows still ranked the same? This script trains a second
domain CNN (pooled map ``--grid``; by default 1, the global-average-pooling CNN of the runs it
was written for) for ``--epochs`` epochs on 80 % of the run's training images, prints its accuracy on the other 20 % (and the run's own CNN's on the same images),
then decodes every saved sample set (``samples/<key>.pt``) with the run's VAE and prints,
per row, the run's FD_domain beside the one in the new features, with precision, recall,
coverage and the class counts the new CNN predicts. The run directory is only read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from augmentor.metrics import (DomainFeatures, density_coverage, domain_accuracy, extract_features,
                               feature_statistics, frechet_distance, precision_recall, train_domain_classifier)
from augmentor.utils.artifacts import load_intact
from augmentor.utils.batching import decode_batches
from augmentor.utils.config import shipped_config
from pipelines.benchmark.config import load_benchmark_config
from pipelines.benchmark.stages import GenerationPaths, load_domain_classifier, predict_classes
from pipelines.common.image_model import _load_model, load_image_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished generation benchmark's run directory")
    parser.add_argument("--config", default="mnist_sampling_quick", help="the config the run was made with")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the second domain CNN")
    parser.add_argument("--grid", type=int, default=1,
                        help="pooled map of the second CNN (1: the architecture of the runs this was written for)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = load_benchmark_config(shipped_config(args.config))
    data = load_image_data(config.data)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(data.train), generator=generator)
    n_fit = int(0.8 * len(order))
    fit, held = order[:n_fit], order[n_fit:]
    strong = train_domain_classifier(data.train[fit], data.train_labels[fit], seed=args.seed, epochs=args.epochs,
                                     grid=args.grid)
    paths = GenerationPaths(args.run)
    own = load_domain_classifier(paths.domain_classifier)
    vae = _load_model(paths, config.check_data(tuple(data.train.shape[1:]), len(data.train)))
    if own is None or vae is None:
        raise SystemExit(f"{args.run} holds no intact domain CNN or VAE: not a finished benchmark run")
    held_x, held_y = data.train[held], data.train_labels[held]
    print(f"domain CNN accuracy on {len(held)} training images the new CNN did not see: "
          f"run's CNN ({config.metrics.domain_epochs} epochs, all training images) {domain_accuracy(own, held_x, held_y):.3f}, "
          f"new CNN ({args.epochs} epochs) {domain_accuracy(strong, held_x, held_y):.3f}")

    features = DomainFeatures(strong)
    real = extract_features(data.test, features, config.metrics.batch_size)
    real_stats = feature_statistics(real)
    summary = pd.read_csv(args.run / "report" / "summary.csv").set_index("key")
    rows = []
    for key, row in summary.iterrows():
        record = load_intact(paths.samples(key))
        if record is None:
            continue
        images = decode_batches(vae, record["z"], config.metrics.batch_size, torch.device("cpu"))
        fake = extract_features(images, features, config.metrics.batch_size)
        precision, recall = precision_recall(real, fake, config.metrics.precision_recall_k)
        _, coverage = density_coverage(real, fake, config.metrics.density_coverage_k)
        counts = torch.bincount(predict_classes(strong, images), minlength=int(data.train_labels.max()) + 1)
        rows.append({"sampler": row["sampler"], "fd_domain_run": row["fd_domain"],
                     "fd_domain_new": frechet_distance(real_stats, feature_statistics(fake)),
                     "precision": precision, "recall": recall, "coverage": coverage,
                     "classes": f"{int(counts.min())}-{int(counts.max())}",
                     "nn_train_ratio": row["memorisation_median_ratio"],
                     "latent_distance_ratio": row["latent_distance_ratio"]})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
