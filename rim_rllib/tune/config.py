"""A trial's config as the study runner builds it: base keys plus one ``variant`` dict
(model / Kt / Ka / cell) from the grid. Trainables and the results export read it flat.

A trial may train a *pack* of models (see :func:`rim_rllib.pack`): ``seed`` and, for
RIMs, ``k`` may then be lists, and the trial's members are every ``k`` x every ``seed``,
in that order (:func:`pack_members`).
"""

from rim_rllib.rim import RANK_RULES


def flat_config(config: dict) -> dict:
    """``config`` with its ``variant`` dict's keys merged in (variant wins)."""
    flat = {key: value for key, value in config.items() if key != "variant"}
    flat.update(config.get("variant", {}))
    return flat


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def pack_members(config: dict, model_key: str = "model") -> list[dict]:
    """The models a trial trains, in pack order: ``{"k": Ka, "seed": seed}`` for every
    ``k`` (``None`` for the LSTM baseline) and every ``seed`` of ``config``."""
    cfg = flat_config(config)
    ks = as_list(cfg.get("k")) if cfg.get(model_key, "rim") == "rim" else [None]
    return [{"k": k, "seed": seed} for k in ks for seed in as_list(cfg.get("seed", 0))]


def check_rank_by(value) -> None:
    """``config['rank_by']``: how the RIMs choose their active units."""
    if value not in RANK_RULES:
        raise ValueError(f"config['rank_by'] must be one of {list(RANK_RULES)} (the paper's "
                         f"rule, the least attention to the null input, first; 'score' is "
                         f"the community implementation's), got {value!r}")


def check_k_anneal(value, unit: str) -> None:
    """``config['k_anneal']``: the fraction of the training ``unit`` (steps, frames) over
    which the RIMs' active units fall from all to Ka."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"config['k_anneal'] must be the fraction of training {unit} in "
                         f"[0, 1] over which the RIMs' active units fall from all to Ka "
                         f"(0: Ka from the start), got {value!r}")
