"""Draw docs/soft_ranks.png: soft ranks against temperature for every relaxation.

    python docs/make_soft_ranks_figure.py

One example vector; each curve is one element's soft rank (ascending: rank 1 = smallest) as the
temperature goes from 0.01 to 100 (log scale); the dotted lines are the hard ranks.
Needs matplotlib.
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rank.soft.relaxations import RELAXATIONS  # noqa: E402

VALUES = np.array([-1.4, -0.5, 0.3, 0.9, 1.2, 2.0])
TEMPERATURES = np.logspace(-2, 2, 161)
TITLES = {
    "sigmoid": "sigmoid (pairwise)",
    "neuralsort": "NeuralSort (Grover et al. 2019)",
    "softrank": "SoftRank (Taylor et al. 2008), sigma = temperature",
    "smoothi": "SmoothI (Thonet et al. 2022), delta = 0.1",
}


def main(path=os.path.join(os.path.dirname(os.path.abspath(__file__)), "soft_ranks.png")):
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharex=True, sharey=True)
    hard = np.argsort(np.argsort(VALUES)) + 1
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(VALUES)))
    for ax, (name, (forward, _)) in zip(axes.flat, RELAXATIONS.items()):
        ranks = np.stack([forward(VALUES, temperature=t) for t in TEMPERATURES])
        for i, color in enumerate(colors):
            ax.plot(TEMPERATURES, ranks[:, i], color=color, label=f"x = {VALUES[i]:+.1f}")
            ax.axhline(hard[i], color=color, linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_title(TITLES[name], fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("temperature")
    for ax in axes[:, 0]:
        ax.set_ylabel("soft rank (ascending)")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Soft ranks of one vector against temperature (dotted: hard ranks)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
