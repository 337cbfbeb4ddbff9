"""How well can the quick 3D cohort's volumes be reconstructed at all? A linear PCA reference for the VAEs' fit.

    PYTHONPATH=. python benchmarks/vae3d_pca_reference.py [--config oasis_3d_quick] [--seeds 0,1] [--components 4,8,16]

Per seed and class: principal components of the seed's training volumes of that class;
prints the held-out (validation subjects) reconstruction error of the projection onto the
first k components over the class-mean baseline, the ratio the study's fit report gives
its VAEs (``heldout_recon_ratio``). A VAE with a latent of k dimensions that fits the
volumes should come near the k-component figure.
"""

from __future__ import annotations

import argparse

import torch

from augmentor.models.fit_report import class_mean_error
from augmentor.models.vae import reconstruction_error
from pipelines.oasis_study.config import CLASS_NAMES, load_study_config
from pipelines.common.study_data import load_study_data, split_subjects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/oasis_3d_quick.yaml")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--components", default="4,8,16")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_study_config(args.config)
    data = load_study_data(config.data, progress=False)
    for seed in (int(s) for s in args.seeds.split(",")):
        split = split_subjects(data.subject_ids, data.labels, seed, config.split)
        train, held = torch.tensor(split["train"]), torch.tensor(split["val"])
        for label in (0, 1):
            x = data.images[train][data.labels[train] == label]
            heldout = data.images[held][data.labels[held] == label]
            mean = x.mean(0, keepdim=True)
            basis = torch.linalg.svd((x - mean).flatten(1), full_matrices=False).Vh
            baseline = class_mean_error(x, heldout)
            errors = {}
            for k in (int(c) for c in args.components.split(",")):
                codes = (heldout - mean).flatten(1) @ basis[:k].T
                recon = (codes @ basis[:k]).reshape(heldout.shape) + mean
                errors[k] = reconstruction_error(recon, heldout)
            ratios = [f"{k} components {float(e.mean() / baseline.mean()):.3f}" for k, e in errors.items()]
            print(f"seed {seed} {CLASS_NAMES[label]}: {len(x)} training, {len(heldout)} held out; held out / class mean: "
                  + ", ".join(ratios), flush=True)
            most = max(errors)
            print(f"  held-out subjects at {most} components, error / class-mean error each: "
                  + " ".join(f"{r:.3f}" for r in (errors[most] / baseline).tolist()), flush=True)


if __name__ == "__main__":
    main()
