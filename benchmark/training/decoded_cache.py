"""Training views of a split's images decoded once and kept on disk, memory-mapped.

Training reads every image once per epoch. Without this cache each read decodes the JPEG again;
with it (`train.decoded_cache: true`), the first use decodes each image to its training view
(benchmark.training.data.training_view: uint8 at the training resolution times the augmentation's
margin, plus the part label map when a part head trains) and later epochs read those pixels from
a memory-mapped `.npy`. The views are the very ones the uncached path computes, so the trained
weights do not depend on the cache.

Files, under `<cache>/decoded/`, named by a key of everything that determines their content
(dataset fingerprint, image indices, view size, label maps, format version):
    <key>.pixels.npy   (n, S, S, 3) uint8
    <key>.labels.npy   (n, S, S) uint8, only with label maps
    <key>.json         the key's parts, shapes and the sha256 of each .npy file, written last
A set whose header is missing, unreadable, of another key, or whose files do not hash to the
header's values is rebuilt (with a warning). Remove the cache with
`python -m benchmark cache --clear decoded`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from benchmark.config.cache_layout import DECODED_FOLDER
from episodes.storage import atomic_write_text, file_sha256, json_sha256, loads_strict, sha256_hex

DECODED_FORMAT_VERSION = 1


def decoded_key(parts: dict[str, Any]) -> str:
    """Hex sha256 (first 24 digits) of the key parts' JSON plus the format version."""
    return json_sha256({**parts, "format_version": DECODED_FORMAT_VERSION})[:24]


class _Views(Dataset):
    """Loader items for filling the cache: position k -> (pixels (S, S, 3), labels (S, S) | (0,))."""

    def __init__(
        self, make_view: Callable[[int], tuple[np.ndarray, np.ndarray | None]], indices: np.ndarray
    ) -> None:
        self.make_view, self.indices = make_view, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        pixels, labels = self.make_view(int(self.indices[k]))
        labels = torch.from_numpy(np.array(labels)) if labels is not None else torch.empty(0)
        return torch.from_numpy(np.array(pixels)), labels


class DecodedViews:
    """The training views of `indices`, memory-mapped: `view(image_index)` -> (pixels (S, S, 3)
    uint8, labels (S, S) uint8 or None), read-only numpy views of the files.

    Build or open with `DecodedViews.open(...)`. Pickles as its paths (DataLoader workers reopen
    the files without re-hashing them).
    """

    def __init__(self, folder: Path, key: str, indices: np.ndarray, with_labels: bool) -> None:
        self.folder, self.key, self.with_labels = folder, key, with_labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self._row = {int(i): k for k, i in enumerate(self.indices)}
        self._pixels: np.ndarray | None = None
        self._labels: np.ndarray | None = None

    # ---- files ------------------------------------------------------------------------------
    @property
    def header_path(self) -> Path:
        return self.folder / f"{self.key}.json"

    def _array_paths(self) -> dict[str, Path]:
        names = ("pixels", "labels") if self.with_labels else ("pixels",)
        return {name: self.folder / f"{self.key}.{name}.npy" for name in names}

    @classmethod
    def open(
        cls,
        cache_dir: str | os.PathLike,
        *,
        fingerprint: str,
        indices: np.ndarray,
        view_size: int,
        with_labels: bool,
        make_view: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
        num_workers: int = 0,
        progress: bool = False,
    ) -> "DecodedViews":
        """The cached views of `indices`, built (decoding every image once) when missing or
        when the files on disk fail verification.

        Args:
            cache_dir: the cache root; files go to `<cache_dir>/decoded/`.
            fingerprint: the dataset's fingerprint.
            indices: (n,) dataset image indices, in the order of the rows.
            view_size: S, the side of every view.
            with_labels: also store part label maps.
            make_view: image index -> (pixels (S, S, 3) uint8, labels (S, S) uint8 | None).
            num_workers: DataLoader workers decoding while building.
        """
        idx = np.ascontiguousarray(indices, dtype="<i8")
        parts = {
            "dataset": fingerprint,
            "indices": sha256_hex(idx.tobytes()),
            "n_images": int(idx.size),
            "view_size": int(view_size),
            "with_labels": bool(with_labels),
        }
        views = cls(Path(cache_dir) / DECODED_FOLDER, decoded_key(parts), idx, with_labels)
        problem = views._verify(parts, view_size)
        if problem is not None:
            if problem != "missing":
                warnings.warn(
                    f"decoded-image cache {views.header_path.name}: {problem}; rebuilding",
                    stacklevel=2,
                )
            views._build(parts, view_size, make_view, num_workers, progress)
        return views

    def _verify(self, parts: dict[str, Any], view_size: int) -> str | None:
        """None when the header and files are intact; else what is wrong ("missing" if absent)."""
        if not self.header_path.is_file():
            return "missing"
        try:
            header = loads_strict(self.header_path.read_bytes())
        except (OSError, ValueError) as err:
            return f"unreadable header ({err})"
        if not isinstance(header, dict) or not isinstance(header.get("files"), dict):
            return "its header is not a decoded-cache header"
        if header.get("key") != self.key or header.get("parts") != parts:
            return "its header holds another key"
        n, s = int(parts["n_images"]), int(view_size)
        shapes = {"pixels": [n, s, s, 3], "labels": [n, s, s]}
        for name, path in self._array_paths().items():
            entry = header["files"].get(name)
            if not isinstance(entry, dict):
                return f"its header has no entry for {name}"
            if not path.is_file():
                return f"{path.name} is not a file"
            if entry.get("shape") != shapes[name]:
                return f"{name} has shape {entry.get('shape')}, not {shapes[name]}"
            try:
                stored = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                return f"{path.name} is unreadable ({err})"
            if list(stored.shape) != shapes[name] or stored.dtype != np.uint8:
                return f"{path.name} holds {stored.dtype} {list(stored.shape)}"
            if file_sha256(path) != entry.get("sha256"):
                return f"{path.name} does not match its sha256 (changed or cut short)"
        return None

    def _build(
        self,
        parts: dict[str, Any],
        view_size: int,
        make_view: Callable[[int], tuple[np.ndarray, np.ndarray | None]],
        num_workers: int,
        progress: bool,
    ) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.header_path.unlink(missing_ok=True)  # no header: the set is incomplete
        for path in self._array_paths().values():
            if path.is_dir() and not path.is_symlink():  # damage: set it aside, never delete it
                os.replace(path, path.with_name(f"{path.name}.corrupt-{os.getpid()}"))
        n, s = len(self.indices), int(view_size)
        tmp = {
            name: path.with_name(f"{path.name}.tmp-{os.getpid()}")
            for name, path in self._array_paths().items()
        }
        arrays = {"pixels": np.lib.format.open_memmap(tmp["pixels"], "w+", np.uint8, (n, s, s, 3))}
        if self.with_labels:
            arrays["labels"] = np.lib.format.open_memmap(tmp["labels"], "w+", np.uint8, (n, s, s))
        loader = DataLoader(_Views(make_view, self.indices), batch_size=32, num_workers=num_workers)
        row = 0
        try:
            for pixels, labels in tqdm(
                loader, desc="decoded-image cache", disable=not progress, leave=False
            ):
                arrays["pixels"][row : row + len(pixels)] = pixels.numpy()
                if self.with_labels:
                    arrays["labels"][row : row + len(pixels)] = labels.numpy()
                row += len(pixels)
            files = {}
            for array in arrays.values():
                array.flush()
                del array
            arrays.clear()
            for name, path in self._array_paths().items():
                files[name] = {
                    "shape": [n, s, s, 3] if name == "pixels" else [n, s, s],
                    "sha256": file_sha256(tmp[name]),
                }
                os.replace(tmp[name], path)
        finally:
            arrays.clear()
            for path in tmp.values():
                path.unlink(missing_ok=True)
        atomic_write_text(
            self.header_path,
            json.dumps({"key": self.key, "parts": parts, "files": files}, sort_keys=True, indent=1),
        )

    # ---- reading ----------------------------------------------------------------------------
    def view(self, image_index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(pixels (S, S, 3) uint8, labels (S, S) uint8 or None) of one image (read-only)."""
        if self._pixels is None:
            paths = self._array_paths()
            self._pixels = np.load(paths["pixels"], mmap_mode="r")
            self._labels = np.load(paths["labels"], mmap_mode="r") if self.with_labels else None
        row = self._row[int(image_index)]
        return self._pixels[row], None if self._labels is None else self._labels[row]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pixels"] = state["_labels"] = None  # workers map the files themselves
        return state

    @property
    def nbytes(self) -> int:
        """Bytes on disk of this set's files."""
        return sum(
            p.stat().st_size
            for p in [*self._array_paths().values(), self.header_path]
            if p.is_file()
        )
