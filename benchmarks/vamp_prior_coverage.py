"""Does a trained VampPrior cover the codes it is meant to generate?

Run:  python benchmarks/vamp_prior_coverage.py RUN_DIR [--n 2000]

RUN_DIR is a generation-benchmark run directory with a trained VAMP
(``models: [{name: vamp}]``), e.g. ``runs/mnist_quick_peers``. For the first
``n`` training codes (posterior means) it prints the median distance to the
nearest pseudo-input posterior mean and the mean log VampPrior density, with
the pseudo-inputs encoded in eval mode (BatchNorm's running statistics: what
the VAMP sampler draws from) and in training mode (each batch's own statistics:
what the loss saw while training).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from augmentor.io import load_tensors
from augmentor.peers import build_model
from augmentor.peers.vamp import VAMPConfig, vamp_log_prior


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
        for mode, net in (("eval", model.eval()), ("train", copy.deepcopy(model).train())):
            mu, log_var = net.pseudo_posteriors()
            nearest = torch.cdist(codes, mu).min(1).values.median()
            density = vamp_log_prior(codes, mu, log_var).mean()
            print(f"{mode:5s} mode: nearest pseudo-posterior mean at median distance {nearest:.2f}, "
                  f"mean log prior density {density:.1f}")


if __name__ == "__main__":
    main()
