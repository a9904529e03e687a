"""Finds, on the CPU, the operations that would make the host wait for a CUDA device.

``torch.cuda.set_sync_debug_mode("error")`` needs a GPU. On the CPU the same operations
still pass through PyTorch's dispatcher, so a dispatch mode can name them: reading a value
back (``.item()``, ``bool(t)``, ``int(t)``), operations whose output size depends on the data
(``nonzero``, boolean-mask indexing, ``unique``) and copies from host data (``torch.tensor``,
``new_tensor``, indexing with a Python list). Copies to the CPU (``.cpu()``, ``.numpy()``) do
not pass through it for CPU tensors: :func:`run_device_paths_on_cpu` takes the package's
device paths, which have none.
"""

from __future__ import annotations

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: Operations that synchronise whatever their arguments.
_ALWAYS = {
    "aten._local_scalar_dense",  # .item(), bool(), int(), float() of a tensor
    "aten.lift_fresh",  # a tensor from host data: a host-to-device copy
    "aten.nonzero",
    "aten.masked_select",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.equal",
    "aten.is_nonzero",
}


def _with_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype == torch.bool
        for i in (indices if isinstance(indices, (list, tuple)) else ())
    )


class HostSyncRecorder(TorchDispatchMode):
    """Records each operation that would synchronise with a CUDA device, with where it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        by_mask = name in ("aten.index", "aten.index_put", "aten.index_put_") and _with_bool_index(
            args
        )
        repeat = name == "aten.repeat_interleave" and kwargs.get("output_size") is None
        if name in _ALWAYS or by_mask or (repeat and isinstance(args[0], torch.Tensor)):
            frames = [
                f"{f.filename.split('/')[-1]}:{f.lineno} {f.name}"
                for f in traceback.extract_stack()[:-1]
                if "lightly_temperature" in f.filename or "lightly/" in f.filename
            ]
            self.found.append(f"{name} at {' <- '.join(reversed(frames[-4:]))}")
        return func(*args, **kwargs)


def run_device_paths_on_cpu(monkeypatch) -> None:
    """Makes every module of the package take its device (non-host) paths for CPU tensors."""
    import sys

    from lightly_temperature import _device

    original = _device.on_host
    for name, module in list(sys.modules.items()):
        if name.startswith("lightly_temperature") and getattr(module, "on_host", None) is original:
            monkeypatch.setattr(module, "on_host", lambda tensor: False)
