"""Does a trained VampPrior cover the codes it is meant to generate?

Run:  python benchmarks/vamp_prior_coverage.py RUN_DIR [--n 2000]

RUN_DIR is a generation-benchmark run directory with a trained VAMP
(``models: [{name: vamp}]``), e.g. ``runs/mnist_quick_peers``. For the first
``n`` training codes (posterior means) it prints the median distance to the
nearest pseudo-input posterior mean and the mean log VampPrior density, with
the model in eval mode (BatchNorm's running statistics), as the VAMP sampler
draws from it. A prior that covers the codes has its nearest components well
inside the codes' norm (README, "Peer models": 9.1 against norms of 10 before
the pseudo-inputs were encoded in one batch with the images, 4.9 after).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from augmentor.utils.io import load_tensors
from augmentor.models.peers import build_model
from augmentor.models.peers.vamp import VAMPConfig, vamp_log_prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()

    saved = load_tensors(args.run_dir / "model" / "vamp.pt")
    model = build_model(VAMPConfig.from_dict(saved["config"]))
    model.load_state_dict(saved["state"])
    codes = load_tensors(args.run_dir / "model" / "vamp_codes.pt")["mu"][: args.n]
    print(f"{len(codes)} training codes, mean norm {codes.norm(dim=1).mean():.2f}")
    with torch.no_grad():
        mu, log_var = model.eval().pseudo_posteriors()
    nearest = torch.cdist(codes, mu).min(1).values.median()
    density = vamp_log_prior(codes, mu, log_var).mean()
    print(f"nearest pseudo-posterior mean at median distance {nearest:.2f}, mean log prior density {density:.1f}")


if __name__ == "__main__":
    main()
