"""Evaluate a sequential-MNIST trial checkpoint at any image sizes, without training.

    python -m rim_rllib.tune.evaluate_mnist \\
        results/ka_sweep-mnist-cpu/<trial>/checkpoint_000002 --sizes 14 16 19 24 28

A checkpoint is what Tune keeps of an MNIST trial (``checkpoint_*`` folders in the trial's
directory under ``<storage>/<study>/``); the trial's config (``params.json`` beside them)
says which models its pack holds. Prints each model's test accuracy (%) per image size as a
Markdown table (``--out`` also writes it as CSV), on the same test images at every size.
"""

import argparse
import functools
import sys
from pathlib import Path

import pandas as pd
import torch

from rim_rllib.cli import HelpFormatter, int_at_least, show_table
from rim_rllib.mnist_data import MnistError, find_data_dir, sequential_mnist
from rim_rllib.packing import pack
from rim_rllib.tune.config import pack_members
from rim_rllib.tune.mnist import MnistTrainable, encode_pixels
from rim_rllib.tune.sequence import rim_config, trial_checkpoint


def load_trial(checkpoint: str | Path) -> tuple[torch.nn.Module, dict, list[dict]]:
    """The trained pack of an MNIST trial checkpoint (on CPU, in eval mode), the trial's
    resolved config and its members (``{"k", "seed"}`` in pack order)."""
    checkpoint, config = trial_checkpoint(checkpoint, "an MNIST")
    cfg = MnistTrainable.resolve_config(config)
    members = pack_members(cfg)
    model = pack([MnistTrainable.build_model(cfg, m["k"], rim_config(cfg)) for m in members])
    state = torch.load(checkpoint / "state.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, members


@functools.cache
def test_set(data_dir: str | None, size: int, subset: int | None = None,
             encoding: str = "raw") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``subset`` test images (all with ``None``) at ``size`` as model input
    :math:`(N, T, D)` in the trial's ``input_encoding`` (:func:`encode_pixels`) and their
    labels :math:`(N,)`; read once per process and arguments, for every trial that
    evaluates on them."""
    images, labels = sequential_mnist(find_data_dir(data_dir), "test", size)
    return (encode_pixels(torch.from_numpy(images[:subset]), encoding),
            torch.from_numpy(labels[:subset]))


@torch.no_grad()
def accuracy_table(model: torch.nn.Module, cfg: dict, members: list[dict], sizes,
                   data_dir=None, subset: int | None = None,
                   batch_size: int = 500) -> pd.DataFrame:
    """One row per model (member, model, Kt, Ka, seed), the test accuracy in % at each of
    ``sizes`` (the first ``subset`` test images, or all)."""
    table = pd.DataFrame({"member": range(len(members)), "model": cfg["model"],
                          "Kt": cfg["num_units"], "Ka": [m["k"] for m in members],
                          "seed": [m["seed"] for m in members]})
    for size in sizes:
        x_all, y_all = test_set(data_dir or cfg["data_dir"], size, subset,
                                cfg["input_encoding"])
        correct = torch.zeros(len(members))
        for first in range(0, len(y_all), batch_size):
            correct += (model(x_all[first:first + batch_size]).argmax(-1)
                        == y_all[first:first + batch_size]).sum(1)
        trained = "*" if size == cfg["train_size"] else ""
        table[f"{size}{trained}"] = (100 * correct / len(y_all)).numpy().round(2)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="a trial's checkpoint_* directory")
    parser.add_argument("--sizes", type=int_at_least(1), nargs="+", default=None,
                        help="image sizes (default: the trial's training and evaluation "
                             "sizes)")
    parser.add_argument("--subset", type=int_at_least(1), default=None,
                        help="the first N test images (default: the trial's own, its "
                             "eval_subset, so that the trial's numbers come back)")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST IDX files (default: the trial's, then $RIM_DATA_DIR, "
                             "the user cache, download)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the table to accuracy.csv in this folder")
    args = parser.parse_args(argv)
    try:
        model, cfg, members = load_trial(args.checkpoint)
        sizes = args.sizes or [cfg["train_size"], *cfg["eval_sizes"]]
        subset = args.subset or cfg["eval_subset"]
        table = accuracy_table(model, cfg, members, sizes, args.data_dir, subset)
    except (FileNotFoundError, ValueError, MnistError) as err:
        print(f"evaluate_mnist: {err}", file=sys.stderr)
        return 2
    shown = ("the first " + str(subset) if subset else "all") + " test images"
    own = " (the trial's own)" if not args.subset else ""
    print(f"test accuracy in %, {shown}{own}, at sizes {sizes}:\n")
    show_table(table, args.out, "accuracy.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
