"""A trial's config as the study runner builds it: base keys plus one ``variant`` dict
(model / Kt / Ka / cell) from the grid. Trainables and the results export read it flat."""


def flat_config(config: dict) -> dict:
    """``config`` with its ``variant`` dict's keys merged in (variant wins)."""
    flat = {key: value for key, value in config.items() if key != "variant"}
    flat.update(config.get("variant", {}))
    return flat
