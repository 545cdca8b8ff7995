from pathlib import Path

import pytest

from mnist_files import write_mnist


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(autouse=True)
def _no_stray_data_dirs(monkeypatch, tmp_path):
    """Tests see no real cache and no download unless they ask for it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _trainables_log_under_tmp(monkeypatch, tmp_path):
    """A Tune Trainable built outside Tune logs to ~/ray_results by default: not here."""
    monkeypatch.setattr("ray.tune.trainable.trainable.DEFAULT_STORAGE_PATH",
                        str(tmp_path / "ray_results"))


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the tests that need it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True)
    yield
    ray.shutdown()
