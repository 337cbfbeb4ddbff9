"""Held-out accuracy of the domain CNN (behind FD_domain) for each size of its pooled map.

    PYTHONPATH=. python benchmarks/domain_cnn_grid.py [--config mnist_sampling_quick] [--epochs 10] [--grids 1 2 4]

Trains :class:`augmentor.metrics.DomainClassifier` on 80 % of the config's training images,
once per ``--grids`` value, with the same seed and epochs, and prints its accuracy on the other
20 % and on the config's test images, with the training time. ``grid = 1`` is global average
pooling (the CNN before ``metrics.domain_grid`` existed). Nothing is written.
"""

from __future__ import annotations

import argparse
import time

import torch

from augmentor.metrics import domain_accuracy, train_domain_classifier
from augmentor.utils.config import shipped_config
from pipelines.benchmark.config import load_benchmark_config
from pipelines.benchmark.stages import domain_test_accuracy
from pipelines.common.image_model import load_image_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="mnist_sampling_quick", help="a generation benchmark config")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--grids", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=1, help="seed of the split and of the training")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = load_benchmark_config(shipped_config(args.config))
    data = load_image_data(config.data)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(args.seed))
    fit, held = order[: int(0.8 * len(order))], order[int(0.8 * len(order)):]
    print(f"{args.config}: {len(fit)} training images, {len(held)} held out, {len(data.test)} test images, "
          f"{args.epochs} epochs, {torch.get_num_threads()} threads")
    print("grid  held-out accuracy  test accuracy  training s")
    for grid in args.grids:
        start = time.perf_counter()
        classifier = train_domain_classifier(data.train[fit], data.train_labels[fit], seed=args.seed,
                                             epochs=args.epochs, grid=grid)
        seconds = time.perf_counter() - start
        held_accuracy = domain_accuracy(classifier, data.train[held], data.train_labels[held])
        print(f"{grid:>4}  {held_accuracy:>17.3f}  {domain_test_accuracy(classifier, data):>13.3f}  {seconds:>10.1f}")


if __name__ == "__main__":
    main()
