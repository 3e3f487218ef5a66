"""Read PyTorch ``.pth`` state dicts into numpy without torch.

Both serialisations are handled: the zip format (torch >= 1.6: ``archive/data.pkl`` plus
``archive/data/<key>`` storages) and the legacy stream (magic number, protocol, sys info, the
pickled object, the storage key list, then each storage as an int64 element count followed by
its raw bytes). A restricted unpickler rebuilds tensors as numpy arrays through
``persistent_load``; any class other than the handful a state dict needs is refused, so a
malicious file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from evopose_sdk.errors import EvoPoseError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": None,
}


class TorchPickleError(EvoPoseError, ValueError):
    """The file is not a readable PyTorch state dict."""


class _Storage:
    def __init__(self, key: str, dtype, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, numel
        self.array: np.ndarray | None = None


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size, stride) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        base = self.storage.array
        if base is None:
            raise TorchPickleError(f"storage {self.storage.key} was never read")
        if not self.size:
            return base[self.offset].copy()
        item = base.itemsize
        return np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=[s * item for s in self.stride]).copy()


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _Tensor(storage, int(storage_offset), size, stride)


def _rebuild_parameter(data, *unused):
    return data


class _StorageType:
    def __init__(self, name: str) -> None:
        if name not in _STORAGE_DTYPES or _STORAGE_DTYPES[name] is None:
            raise TorchPickleError(f"unsupported tensor storage type {name}")
        self.dtype = _STORAGE_DTYPES[name]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise TorchPickleError(f"refusing to unpickle {module}.{name} (not a plain state dict)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise TorchPickleError(f"unexpected persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if isinstance(storage_type, _StorageType):
            dtype = storage_type.dtype
        else:
            raise TorchPickleError(f"unsupported storage type {storage_type!r}")
        storages = self.storages  # type: ignore[attr-defined]
        if key not in storages:
            storages[key] = _Storage(str(key), dtype, int(numel))
        return storages[key]


def _materialise(obj):
    if isinstance(obj, _Tensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return OrderedDict((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_zip(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise TorchPickleError(f"{path}: zip without data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        up = _Unpickler(io.BytesIO(z.read(pkl[0])))
        up.storages = {}
        obj = up.load()
        for key, st in up.storages.items():
            raw = z.read(f"{prefix}data/{key}")
            st.array = np.frombuffer(raw, dtype=np.dtype(st.dtype).newbyteorder("<"))
    return obj


def _load_legacy(path: Path) -> dict:
    with open(path, "rb") as f:
        magic = pickle.load(f)  # noqa: S301 - plain ints/dicts, checked below
        if magic != LEGACY_MAGIC:
            raise TorchPickleError(f"{path} is neither a zip nor a legacy PyTorch file")
        pickle.load(f)  # protocol version
        sys_info = pickle.load(f)  # noqa: S301
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise TorchPickleError(f"{path}: big-endian files are not supported")
        up = _Unpickler(f)
        up.storages = {}
        obj = up.load()
        keys = pickle.load(f)  # noqa: S301 - a list of strings
        for key in keys:
            st = up.storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * np.dtype(st.dtype).itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise TorchPickleError(f"{path}: truncated storage {key}")
            st.array = np.frombuffer(raw, dtype=st.dtype)
    return obj


def load_state_dict(path: str | os.PathLike) -> OrderedDict[str, np.ndarray]:
    """Read a ``.pth`` state dict as ``{name: numpy array}`` (no torch needed).

    Raises:
        FileNotFoundError: no such file. TorchPickleError: not a plain state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise TorchPickleError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return _materialise(obj)
