"""Small IDX files for the tests, written the way the real MNIST files are."""

import gzip
import hashlib
from pathlib import Path

import numpy as np

from rim_rllib.mnist_data import FILES


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzipped when ``gz``."""
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(
        n.to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(directory: Path, n_train: int = 256, n_test: int = 96, seed: int = 0,
                gz: bool = True, sums: bool = True) -> Path:
    """A small MNIST-shaped data set whose class is the column of a bright bar in the
    bottom rows (late in the pixel sequence, so a short training learns it); with a
    SHA256SUMS file like the real data's."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 100, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 20:28, 4 + 2 * label: 6 + 2 * label] = 255
        image_stem, label_stem = FILES[split]
        for stem, array in ((image_stem, images), (label_stem, labels)):
            path = write_idx(directory / stem, array, gz)
            lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    if sums:
        (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return directory
