import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnist_files import write_idx, write_mnist
from rim_rllib import mnist_data
from rim_rllib.mnist_data import MnistError, find_data_dir, load_split, read_idx, to_sequences


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    path = write_idx(tmp_path / "imgs-idx3-ubyte", images, gz=gz)
    assert np.array_equal(read_idx(path, 3), images)


def test_truncated_file_is_an_error_naming_it(tmp_path):
    path = write_idx(tmp_path / "imgs-idx3-ubyte", np.zeros((5, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MnistError, match=f"{path}.*truncated"):
        read_idx(path, 3)


def test_wrong_magic_is_an_error(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(100, np.uint8), gz=False)
    with pytest.raises(MnistError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(path, 3)


def test_corrupt_gzip_is_an_error(tmp_path):
    path = tmp_path / "imgs-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(MnistError, match=f"{path}: cannot decompress"):
        read_idx(path, 3)


def test_checksum_mismatch_against_sha256sums_names_the_file(tmp_path):
    directory = write_mnist(tmp_path / "data")
    victim = directory / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(write_idx(tmp_path / "other", np.ones(96, np.uint8)).read_bytes())
    with pytest.raises(MnistError, match=f"{victim}: SHA-256 does not match"):
        load_split.__wrapped__(directory, "test")


def test_raw_files_without_checksums_load(tmp_path):
    directory = write_mnist(tmp_path / "raw", gz=False, sums=False)
    images, labels = load_split.__wrapped__(directory, "train")
    assert images.shape == (256, 28, 28) and labels.shape == (256,)


def test_search_order_argument_then_env_then_cache(tmp_path, monkeypatch):
    arg, env, cache = (write_mnist(tmp_path / name) for name in ("arg", "env", "cache"))
    monkeypatch.setattr(mnist_data, "cache_dir", lambda: cache)
    monkeypatch.setenv("RIM_DATA_DIR", str(env))
    assert find_data_dir(arg, download=False) == arg
    assert find_data_dir(None, download=False) == env
    monkeypatch.delenv("RIM_DATA_DIR")
    assert find_data_dir(None, download=False) == cache


def test_missing_data_error_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("RIM_DATA_DIR", raising=False)
    with pytest.raises(MnistError) as err:
        find_data_dir(tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message and "user cache" in message
    assert "--data-dir" in message and "RIM_DATA_DIR" in message


def test_offline_download_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("RIM_DATA_DIR", raising=False)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(mnist_data.urllib.request, "urlopen", offline)
    with pytest.raises(MnistError, match="Download failed .*network unreachable"):
        find_data_dir(tmp_path / "nowhere")


@pytest.mark.parametrize("size", [14, 16, 19, 24, 28])
def test_sequences_are_nearest_resize_then_binarised(size):
    images = np.random.default_rng(size).integers(0, 256, (7, 28, 28)).astype(np.uint8)
    seq = to_sequences(images, size)
    resized = F.interpolate(torch.from_numpy(images).float()[:, None], size=(size, size),
                            mode="nearest")[:, 0].numpy()
    assert seq.shape == (7, size * size) and seq.dtype == np.uint8
    assert np.array_equal(seq, (resized > 120).reshape(7, -1).astype(np.uint8))
    assert set(np.unique(seq)) <= {0, 1}


def test_binarisation_threshold_is_strictly_above_120():
    images = np.full((3, 28, 28), 120, np.uint8)
    images[1] = 121
    assert to_sequences(images, 14).sum(1).tolist() == [0, 196, 0]


def test_bad_size():
    with pytest.raises(ValueError, match="size must be a positive int, got 0"):
        to_sequences(np.zeros((1, 28, 28), np.uint8), 0)


@pytest.mark.skipif(not os.environ.get("RIM_DATA_DIR"),
                    reason="RIM_DATA_DIR (the real MNIST files) not set")
def test_real_mnist_is_complete_and_verified():
    directory = find_data_dir(download=False)
    assert (Path(directory) / "SHA256SUMS").is_file() or directory == mnist_data.cache_dir()
    for split, n in (("train", 60000), ("test", 10000)):
        images, labels = load_split(Path(directory), split)
        assert images.shape == (n, 28, 28) and labels.shape == (n,)
        assert sorted(np.unique(labels)) == list(range(10))
