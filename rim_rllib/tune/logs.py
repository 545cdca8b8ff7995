"""Where a Ray Tune ``Trainable`` built outside a Tune trial logs.

Such a trainable (an RLlib ``Algorithm`` inside a trial, a trial's trainable rebuilt by an
evaluator) has no storage of its own and makes a log folder under Ray's hard-coded
``~/ray_results`` each time it is built.
"""

from contextlib import contextmanager

from ray.tune.trainable import trainable as tune_trainable


@contextmanager
def trainable_logs_in(directory: str):
    """Trainables built inside this context make their log folders in ``directory``."""
    saved = tune_trainable.DEFAULT_STORAGE_PATH
    tune_trainable.DEFAULT_STORAGE_PATH = directory
    try:
        yield
    finally:
        tune_trainable.DEFAULT_STORAGE_PATH = saved
