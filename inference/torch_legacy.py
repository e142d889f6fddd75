"""Read a PyTorch checkpoint in the legacy (pre-zip) serialisation with pickle and numpy, so
the pretrained backbone can be converted without installing torch.

The file is a sequence of pickles: magic number, protocol version, system info, the object
itself (storages appear as persistent ids), and the sorted list of storage keys; then, for each
key in that order, an int64 element count followed by the storage's raw little-endian data.
Only the classes a state dict needs are resolved; any other global is refused, so a
checkpoint cannot run code while it is read.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(Exception):
    """The file is not a legacy PyTorch checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclass
class _StorageRef:
    key: str
    dtype: Any
    numel: int


@dataclass
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(
    storage: _StorageRef, offset: int, size: Any, stride: Any, *_args: Any
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_args: Any) -> Any:
    return data


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"the checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("unexpected storage type")
        view_metadata = pid[5] if len(pid) > 5 else None
        if view_metadata is not None:
            raise CheckpointError("storage views are not supported")
        return self._storages.setdefault(
            str(key), _StorageRef(str(key), storage_type.dtype, int(numel))
        )

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__(stream)
        self._storages: dict[str, _StorageRef] = {}


def _plain_load(stream: IO[bytes]) -> Any:
    return _Unpickler(stream).load()


def load_state_dict(stream: IO[bytes]) -> dict[str, np.ndarray]:
    """The tensors of a legacy checkpoint, by name, as numpy arrays."""
    if _plain_load(stream) != MAGIC_NUMBER:
        raise CheckpointError("not a legacy PyTorch checkpoint (bad magic number)")
    if _plain_load(stream) != PROTOCOL_VERSION:
        raise CheckpointError("unsupported checkpoint protocol version")
    sys_info = _plain_load(stream)
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian checkpoints are not supported")
    unpickler = _Unpickler(stream)
    state = unpickler.load()
    keys = _plain_load(stream)
    refs = unpickler._storages
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        ref = refs.get(str(key))
        if ref is None:
            raise CheckpointError(f"storage {key} is not referenced by any tensor")
        (numel,) = struct.unpack("<q", stream.read(8))
        itemsize = np.dtype(ref.dtype).itemsize
        data = stream.read(numel * itemsize)
        if numel != ref.numel or len(data) != numel * itemsize:
            raise CheckpointError(f"storage {key} is truncated")
        arrays[str(key)] = np.frombuffer(data, dtype=np.dtype(ref.dtype).newbyteorder("<"))
    if not isinstance(state, dict):
        raise CheckpointError("the checkpoint does not hold a state dict")
    tensors: dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            continue
        storage = arrays[value.storage.key]
        itemsize = storage.itemsize
        spans = zip(value.size, value.stride, strict=True)
        needed = value.offset + sum((s - 1) * st for s, st in spans) + 1
        if value.size and min(value.size) > 0 and needed > storage.size:
            raise CheckpointError(f"tensor {name} reaches past its storage")
        view = np.lib.stride_tricks.as_strided(
            storage[value.offset :],
            shape=value.size,
            strides=tuple(s * itemsize for s in value.stride),
            writeable=False,
        )
        tensors[str(name)] = np.array(view, dtype=storage.dtype.newbyteorder("="))
    return tensors
