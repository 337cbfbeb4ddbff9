"""Hashes of the weights and history of four tiny CPU training runs, to compare two versions of the trainer.

Run:  PYTHONPATH=<checkout> python benchmarks/trainer_exactness.py

Runs: a 2D conv VAE with BatchNorm and gradient clipping under an epoch budget,
2D and 3D conv VAEs under a step budget, an MLP VAE; one thread, fixed seeds.
Equal output from two checkouts means they train bit-identically on this CPU
(used to check that the trainer's speed settings at their defaults change nothing).
"""

from __future__ import annotations

import hashlib
import json

import torch

from augmentor.models import VAEConfig, build_vae
from augmentor.models.training import TrainerConfig, train_vae

RUNS = {
    "conv2d-bn-epochs": (
        VAEConfig(in_shape=(1, 16, 16), latent_dim=4, channels=(8, 16), strides=(2, 2), kernel_size=4, norm="batch"),
        TrainerConfig(epochs=3, batch_size=10, seed=1, progress=False, device="cpu", grad_clip=1.0)),
    "conv2d-steps": (
        VAEConfig(in_shape=(1, 16, 16), latent_dim=4, channels=(8, 16), strides=(2, 2), kernel_size=4, norm="none"),
        TrainerConfig(max_steps=25, eval_every=5, batch_size=7, seed=2, progress=False, device="cpu")),
    "conv3d-steps": (
        VAEConfig(in_shape=(1, 8, 8, 8), latent_dim=3, channels=(4, 8), strides=(2, 2), kernel_size=3, norm="none"),
        TrainerConfig(max_steps=10, eval_every=5, batch_size=6, seed=3, progress=False, device="cpu")),
    "mlp-epochs": (
        VAEConfig(in_shape=(1, 8, 8), latent_dim=2, kind="mlp", hidden=(16,)),
        TrainerConfig(epochs=4, batch_size=8, seed=4, progress=False, device="cpu")),
}


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    out = {}
    for name, (vae, trainer) in RUNS.items():
        images = torch.rand((40, *vae.in_shape), generator=generator)
        torch.manual_seed(trainer.seed)  # the initial weights
        model = build_vae(vae)
        result = train_vae(model, images, trainer)
        weights = hashlib.sha256()
        for key, value in model.state_dict().items():
            weights.update(key.encode())
            weights.update(value.contiguous().numpy().tobytes())
        history = hashlib.sha256(json.dumps(result.history).encode())
        out[name] = {"weights": weights.hexdigest()[:16], "history": history.hexdigest()[:16],
                     "best_epoch": result.best_epoch}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
