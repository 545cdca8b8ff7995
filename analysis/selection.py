"""What decides which units of a trained RIM win the input attention: the unit's query
bias or its state?

    python -m analysis.selection results/ka_sweep-mnist-cpu [--sequences 200]

Unit ``j``'s selection score at step ``t`` is ``q_j · k(x_t)`` with the query
``q_j = W_j h_j(t-1) + b_j`` (``rank_by="score"``), or, under the paper's rule
(``rank_by="null_attention"``, one input head: the logit of the attention on the real row),
``q_j · (k(x_t) - k(0))``; either way it splits into a *bias part* ``b_j · k`` and a *state
part* ``(W_j h_j(t-1)) · k``; the input enters both through the key. For every RIM
member of a sequential-MNIST study (from each trial's last checkpoint, on test images at
the training size) this prints how often the active set is the top-Ka of the bias part
alone and of the state part alone (steps with Ka = Kt left out), and the spread of each part
across units (the mean over steps of its standard deviation over units). A bias part that
predicts the active set at nearly every step means the ranking is fixed, whatever the
input and state: collapse. The ranking's other terms (``fatigue``'s tiredness, the usage
floor's bias) are in neither part, so with them on neither part alone predicts as often.
Writes ``selection.csv`` next to the results.
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from rim_rllib.atomic import atomic_write
from rim_rllib.cli import HelpFormatter
from rim_rllib.tune.config import flat_config
from rim_rllib.tune.evaluate_mnist import load_trial, test_set


def score_parts(model, x: torch.Tensor):
    """A packed classifier's active masks and the bias and state parts of its first RIM
    layer's selection scores on ``x`` :math:`(B, T, D)`, each :math:`(M, B, T, K_t)`."""
    rim = model.memory
    cell = rim.cells[0]
    members, units, hidden = rim.num_members, rim.num_units, rim.hidden_size
    output, _, mask = rim(x, return_mask=True)                     # (M, B, T, K H)
    states = output.view(members, *output.shape[1:3], units, hidden)
    h_prev = torch.cat([torch.zeros_like(states[:, :, :1]), states[:, :, :-1]], dim=2)
    keys = torch.einsum("btd,mde->mbte", x, cell.key.weight)
    if cell.rank_by == "score":  # the null row's key, the bias, cancels in the paper's rule
        keys = keys + cell.key.bias[:, None, None]
    w_q = cell.query.weight.view(members, units, hidden, -1)
    b_q = cell.query_bias_or_zeros().view(members, units, -1)
    state_part = torch.einsum("mbtjh,mjhe,mbte->mbtj", h_prev, w_q, keys)
    bias_part = torch.einsum("mje,mbte->mbtj", b_q, keys)
    return mask[:, :, :, 0], bias_part, state_part


def top_set_agreement(mask: torch.Tensor, part: torch.Tensor, k: int) -> float:
    """Fraction of steps whose active set (``mask``, one member) is the top-``k`` of
    ``part``."""
    top = torch.zeros_like(mask).scatter_(-1, part.topk(k, dim=-1).indices, True)
    return float((top == mask).all(-1).float().mean())


def member_rows(trial_dir: Path, sequences: int) -> list[dict]:
    flat = flat_config(json.loads((trial_dir / "params.json").read_text()))
    if flat.get("model", "rim") != "rim" or "train_size" not in flat:
        return []
    checkpoint = max(trial_dir.glob("checkpoint_*"), key=lambda p: p.name, default=None)
    if checkpoint is None:
        return []
    model, cfg, members = load_trial(checkpoint)
    x, _ = test_set(cfg["data_dir"], cfg["train_size"], sequences, cfg["input_encoding"])
    with torch.no_grad():
        mask, bias_part, state_part = score_parts(model, x)
    rows = []
    for i, member in enumerate(members):
        if member["k"] == flat["num_units"]:
            continue
        rows.append(dict(trial=trial_dir.name, Ka=member["k"],
                         seed=member["seed"],
                         bias_decides=top_set_agreement(mask[i], bias_part[i], member["k"]),
                         state_decides=top_set_agreement(mask[i], state_part[i], member["k"]),
                         bias_spread=float(bias_part[i].std(-1).mean()),
                         state_spread=float(state_part[i].std(-1).mean()),
                         **{key: flat[key] for key in ("score_noise", "score_dropout",
                                                       "balance_loss") if key in flat}))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("study", type=Path, help="a study directory (MNIST)")
    parser.add_argument("--sequences", type=int, default=200,
                        help="test images to run (default: 200)")
    args = parser.parse_args(argv)
    if not args.study.is_dir():
        print(f"analysis.selection: no study directory at {args.study}", file=sys.stderr)
        return 2
    rows = [row for trial in sorted(p for p in args.study.iterdir() if p.is_dir())
            for row in member_rows(trial, args.sequences)]
    if not rows:
        print(f"analysis.selection: no RIM trial of a sequential-MNIST study with a "
              f"checkpoint in {args.study}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    keys = [c for c in ("score_noise", "score_dropout", "balance_loss") if c in table]
    table[keys] = table[keys].astype(object).fillna("–")
    summary = table.groupby(["Ka", *keys], dropna=False)[
        ["bias_decides", "state_decides", "bias_spread", "state_spread"]].mean()
    print(summary.round(3).to_markdown())
    out = args.study / "selection.csv"
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    print(f"\nwrote {out} (one row per member)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
