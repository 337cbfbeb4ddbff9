"""CPU cost of the low-data protocol's units, to bound a full run's time on a CPU.

Run:  python benchmarks/lowdata_cost.py [--config configs/mnist_lowdata_full.yaml]

Measures process CPU time (``time.process_time``, one thread), so the figures
hold on a busy machine too: seconds per classifier optimiser step (a batch of
the config's size on 28 x 28 images), per TorchIO and per MONAI augmented image,
per VAE optimiser step. Then prints the config's job counts and the CPU time of
every classifier at its step ceiling (``classifier_steps``), the bound early
stopping can only lower.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from augmentor.utils.config import read_config_data
from augmentor.models import VAE
from pipelines.common.classifier import OasisClassifier, TorchIOAugmentation
from pipelines.lowdata.config import LowDataConfig
from pipelines.lowdata.jobs import MonaiAugmentation, plan_lowdata_jobs
from pipelines.common.methods import method_sampler


def cpu_seconds(fn, repeats: int) -> float:
    """CPU seconds per call of ``fn`` (after one warm-up call)."""
    fn()
    start = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/mnist_lowdata_full.yaml"))
    args = parser.parse_args()
    data = read_config_data(args.config)
    data["methods"] = [m for m in data["methods"] if m.removeprefix("real+") != "kde"]  # the cost of kde ~ gmm
    config = LowDataConfig.from_dict(data)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    batch = config.classifier.batch_size
    images, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    model = OasisClassifier((1, 28, 28), config.classifier, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def classifier_step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    net = VAE(config.vae.build((1, 28, 28)))
    vae_optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def vae_step() -> None:
        vae_optimizer.zero_grad()
        net.loss(images)["loss"].backward()
        vae_optimizer.step()

    torchio = TorchIOAugmentation(config.augmentation, (28, 28), seed=0)
    monai = MonaiAugmentation(config.monai_augmentation, 2, seed=0)
    step = cpu_seconds(classifier_step, 50)
    per_vae_step = cpu_seconds(vae_step, 50)
    per_torchio = cpu_seconds(lambda: torchio(images[:8], 0), 5) / 8
    per_monai = cpu_seconds(lambda: monai(images[:8], 0), 5) / 8
    print(f"classifier step (batch {batch}): {1000 * step:.2f} ms CPU")
    print(f"VAE step (batch {batch}): {1000 * per_vae_step:.2f} ms CPU")
    print(f"TorchIO image: {1000 * per_torchio:.2f} ms CPU; MONAI image: {1000 * per_monai:.2f} ms CPU")
    jobs = plan_lowdata_jobs(config, classes=list(range(10)))  # MNIST's ten digits
    classify = [j for j in jobs if j.kind == "classify"]
    steps = config.classifier_steps or 0
    augmented = [j for j in classify if j.method in ("torchio", "monai")]
    print(f"{args.config} without kde: {len(jobs)} jobs ({len(classify)} classifiers, "
          f"{sum(1 for j in jobs if j.kind == 'generate')} generate jobs; "
          f"{sum(1 for j in classify if method_sampler(j.method))} classifiers with synthetic images)")
    bound_steps = len(classify) * steps * step
    bound_draws = sum(steps * batch * (per_torchio if j.method == "torchio" else per_monai) for j in augmented)
    print(f"every classifier at its {steps}-step ceiling: {bound_steps / 3600:.1f} CPU-hours of steps + "
          f"{bound_draws / 3600:.1f} CPU-hours of augmentation draws")


if __name__ == "__main__":
    main()
