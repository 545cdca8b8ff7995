"""MNIST from the four standard IDX files, and the sequential-MNIST preprocessing.

Where the files are looked for, in order: the ``data_dir`` argument (``--data-dir``), the
``RIM_DATA_DIR`` environment variable, then the user cache directory
(``$XDG_CACHE_HOME/rim_rllib/mnist``, by default ``~/.cache/rim_rllib/mnist``). When none
has them, they are downloaded into the cache directory from the standard public mirrors and
checked against their known SHA-256; offline, the error says where they were looked for and
how to provide them. Files may be gzipped (``*.gz``) or raw. When a directory holds a
``SHA256SUMS`` file (``sha256sum`` format), every file it lists is checked against it.
"""

import gzip
import hashlib
import os
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np

from rim_rllib.atomic import atomic_write

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHA256 = {
    "train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned bytes, 1-D labels / 3-D images
BINARY_THRESHOLD = 120


class MnistError(RuntimeError):
    """MNIST files missing, corrupt or inconsistent."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rim_rllib" / "mnist"


def _file_in(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _has_all(directory: Path) -> bool:
    return all(_file_in(directory, stem) for pair in FILES.values() for stem in pair)


def find_data_dir(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The first directory holding all four files: ``data_dir``, ``$RIM_DATA_DIR``, the
    cache; downloads into the cache when none does and ``download`` is true."""
    candidates = []
    if data_dir is not None:
        candidates.append(("data_dir argument", Path(data_dir)))
    if os.environ.get("RIM_DATA_DIR"):
        candidates.append(("$RIM_DATA_DIR", Path(os.environ["RIM_DATA_DIR"])))
    candidates.append(("user cache", cache_dir()))
    for _, directory in candidates:
        if _has_all(directory):
            return directory
    looked = "; ".join(f"{label}: {d}" for label, d in candidates)
    download_error = None
    if download:
        try:
            return _download(cache_dir())
        except OSError as err:  # offline or a mirror refused
            download_error = err
    raise MnistError(
        "MNIST files not found. Looked in " + looked + ". "
        + (f"Download failed ({download_error}). " if download_error else "")
        + "Put the four standard IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
        "gzipped or not) in a directory and pass it as --data-dir or set RIM_DATA_DIR.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    last_error: OSError | None = None
    for name, expected in SHA256.items():
        target = directory / name
        if target.is_file() and _sha256(target) == expected:
            continue
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name, timeout=30) as response:
                    data = response.read()
            except OSError as err:
                last_error = err
                continue
            if hashlib.sha256(data).hexdigest() != expected:
                last_error = OSError(f"{mirror + name}: SHA-256 mismatch")
                continue
            atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
            break
        else:
            raise last_error or OSError(f"could not download {name}")
    return directory


def _checksums(directory: Path) -> dict[str, str]:
    sums = directory / "SHA256SUMS"
    if not sums.is_file():
        return {}
    table = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            table[name.lstrip("*").strip()] = digest.lower()
    return table


def read_idx(path: str | os.PathLike, ndim: int, expected_sha256: str | None = None
             ) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzipped when its name ends in ``.gz``).

    Raises:
        MnistError: naming the file, when its checksum, magic number or size is wrong.
    """
    path = Path(path)
    if expected_sha256 is not None and _sha256(path) != expected_sha256:
        raise MnistError(f"{path}: SHA-256 does not match the expected {expected_sha256}; "
                         "the file is corrupt or not the standard MNIST file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise MnistError(f"{path}: cannot decompress ({err}); the file is corrupt") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise MnistError(f"{path}: magic number {magic:#010x}, expected "
                         f"{IDX_MAGIC[ndim]:#010x} (unsigned-byte {ndim}-D IDX)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise MnistError(f"{path}: header says shape {shape} ({size} bytes of data), "
                         f"file has {len(raw) - header}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


@lru_cache(maxsize=4)
def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8 of ``"train"`` or ``"test"``."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    sums = _checksums(directory)
    arrays = []
    for stem, ndim in zip(FILES[split], (3, 1)):
        path = _file_in(directory, stem)
        if path is None:
            raise MnistError(f"{directory}: no {stem}(.gz)")
        arrays.append(read_idx(path, ndim, sums.get(path.name)))
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise MnistError(f"{directory}: {split} images {images.shape} and labels "
                         f"{labels.shape} do not form an MNIST split")
    if labels.max() > 9:
        raise MnistError(f"{directory}: {split} labels go up to {labels.max()}, expected 0-9")
    return images, labels


def check_mnist(data_dir: str | os.PathLike | None = None) -> Path:
    """:func:`find_data_dir`, then both splits read once (headers, sizes, decompression,
    checksums when listed): a study's driver calls this before any trial starts, so that a
    broken file ends the study in one :class:`MnistError` line instead of failing every
    trial. Returns the directory."""
    directory = find_data_dir(data_dir)
    for split in FILES:
        load_split(directory, split)
    return directory


def to_sequences(images: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize ``(N, 28, 28)`` images to ``size x size`` (the convention of
    ``F.interpolate(mode="nearest")``), binarise (pixel > 120 is 1) and flatten row by row:
    ``(N, size*size)`` uint8 of 0/1."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    rows = np.floor(np.arange(size) * (images.shape[1] / size)).astype(np.intp)
    cols = np.floor(np.arange(size) * (images.shape[2] / size)).astype(np.intp)
    resized = images[:, rows[:, None], cols[None, :]]
    return (resized > BINARY_THRESHOLD).astype(np.uint8).reshape(len(images), size * size)


@lru_cache(maxsize=16)
def sequential_mnist(directory: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sequences (N, size*size) uint8, labels (N,) int64)`` of a split, computed once per
    process."""
    images, labels = load_split(directory, split)
    return to_sequences(images, size), labels.astype(np.int64)
