"""The copying task (Hochreiter & Schmidhuber, 1997; the RIM paper's first experiment).

A sequence holds ``NUM_RECALL`` random data symbols from ``1..NUM_DATA_SYMBOLS``, then
``dormant - 1`` blanks (``BLANK``), the marker (``MARKER``) and ``NUM_RECALL`` more blanks:
``dormant + 2 * NUM_RECALL`` steps in all. The target is blank for the first
``dormant + NUM_RECALL`` steps, then the data symbols in order: the model must keep them
through the dormant phase and recall them after the marker. Generated on the fly (no files),
vectorised, from a seed.
"""

import numpy as np

NUM_RECALL = 10
NUM_DATA_SYMBOLS = 8
BLANK, MARKER = 0, NUM_DATA_SYMBOLS + 1
NUM_INPUTS = NUM_DATA_SYMBOLS + 2   # symbols a step can read: blank, 1..8, marker
NUM_CLASSES = NUM_DATA_SYMBOLS + 1  # symbols a step can be asked for: blank, 1..8


def sequence_length(dormant: int) -> int:
    """Steps of a sequence with a dormant phase of ``dormant`` steps."""
    return dormant + 2 * NUM_RECALL


def copying_batch(n: int, dormant: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` copying sequences with a dormant phase of ``dormant`` steps.

    Returns ``(inputs, targets)``, both int64 ``(n, dormant + 20)``: inputs in
    ``0..NUM_INPUTS-1``, targets in ``0..NUM_CLASSES-1``; the recall steps are the last
    ``NUM_RECALL``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int (sequences), got {n!r}")
    if isinstance(dormant, bool) or not isinstance(dormant, (int, np.integer)) or dormant < 1:
        raise ValueError(f"dormant must be an int >= 1 (blank steps between the data and "
                         f"the marker, plus one), got {dormant!r}")
    length = sequence_length(dormant)
    data = rng.integers(1, NUM_DATA_SYMBOLS + 1, size=(n, NUM_RECALL))
    inputs = np.full((n, length), BLANK, dtype=np.int64)
    inputs[:, :NUM_RECALL] = data
    inputs[:, NUM_RECALL + dormant - 1] = MARKER
    targets = np.full((n, length), BLANK, dtype=np.int64)
    targets[:, -NUM_RECALL:] = data
    return inputs, targets
