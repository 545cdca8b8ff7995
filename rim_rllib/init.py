"""Initialisations for recurrent memories over long sequences."""

import torch
from torch import nn

from rim_rllib.group import GroupLSTMCell


@torch.no_grad()
def chrono_init_(module: nn.Module, max_steps: int) -> nn.Module:
    """Chrono initialisation (Tallec & Ollivier, 2018, "Can recurrent neural networks
    warp time?") of every LSTM in ``module`` (``nn.LSTM`` layers and the group LSTM
    cells of RIMs), in place: forget-gate biases drawn from
    :math:`\\log \\mathcal{U}(1, T_{max} - 1)`, input-gate biases their negatives, so that
    units start out remembering over 1 to ``max_steps`` steps instead of forgetting half
    of their state at every step. Draws from torch's global RNG. Returns ``module``.
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 3:
        raise ValueError(f"max_steps must be an int >= 3 (the longest dependency, in "
                         f"steps), got {max_steps!r}")
    for sub in module.modules():
        if isinstance(sub, GroupLSTMCell):
            biases = [(sub.hh.bias, sub.ih.bias)]
        elif isinstance(sub, nn.LSTM):
            biases = [(getattr(sub, name.replace("ih", "hh")), getattr(sub, name))
                      for name, _ in sub.named_parameters() if name.startswith("bias_ih")]
        else:
            continue
        for hh, ih in biases:
            hidden = hh.shape[-1] // 4
            forget = torch.empty_like(hh[..., :hidden]).uniform_(1, max_steps - 1).log_()
            hh[..., hidden:2 * hidden] = forget
            hh[..., :hidden] = -forget
            ih[..., :2 * hidden] = 0  # gates i, f come from hh's bias alone
    return module
