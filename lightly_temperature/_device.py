"""Where a tensor lives decides which paths may read values back to the host.

A tensor in host memory can be read back for free (``.item()``, NumPy), so the CPU paths
validate by value and select with NumPy. On an accelerator a read-back makes the host wait for
the device, so those paths use fixed-size operations instead. :func:`on_host` is the one place
that decides; the tests make it answer False to run the device paths on the CPU and find every
operation there that would synchronise.
"""

from __future__ import annotations

from torch import Tensor


def on_host(tensor: Tensor) -> bool:
    """Whether ``tensor`` is in host memory (a CPU tensor)."""
    return tensor.device.type == "cpu"
