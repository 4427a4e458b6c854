"""A second device for a machine that has only a CPU: FAKE (torch's "meta" device by name), which a
TorchFunctionMode turns into CPU tensors that it tags as being on FAKE, and on which it enforces
what torch enforces between a GPU and the CPU:

- a tensor reaches FAKE only through `.to(FAKE)` (a module's `.to(FAKE)` included) or by being
  made there (`device=FAKE`), and comes back only through `.cpu()` or `.to("cpu")`;
- an op given tensors from both sides fails ("Expected all tensors to be on the same device"),
  except what torch allows across devices: a CPU scalar (0-dim) operand, CPU indices into a
  tensor on FAKE, and copies (`x[i] = y`, `x.copy_(y)`);
- `.numpy()` of a tensor on FAKE fails; `x.device` of a tensor on FAKE is FAKE, so code that
  makes tensors "where x is" makes them on FAKE.

Every result of an op with an operand on FAKE is on FAKE. The numbers are the CPU's, so a run on
FAKE can be compared with a plain CPU run. `on_fake` and `on_cpu` count the calls by function
name, for checks that the work ran where it was asked to.

A tensor is on FAKE when its storage is one the mode tagged; tagged tensors are kept alive for the
mode's lifetime so that no CPU tensor reuses their memory.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

FAKE = torch.device("meta")
CPU = torch.device("cpu")

# Calls that compute nothing on their operands: no device check, nothing tagged.
BOOKKEEPING = {"_has_compatible_shallow_copy_type", "_set_grad_enabled", "__set__", "is_floating_point", "dim",
               "size", "numel", "stride", "is_contiguous", "data_ptr", "element_size", "untyped_storage",
               "_parse_to"}
COPIES = {"__setitem__", "copy_"}  # across devices as torch allows: a copy into the destination
TRANSFERS_TO_CPU = {"cpu", "to"}


def _is_fake(value) -> bool:
    if isinstance(value, torch.device):
        return value.type == "meta"
    return isinstance(value, str) and value.split(":")[0] == "meta"


def _name(func) -> str:
    return getattr(func, "__name__", repr(func))


class FakeDevice(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.tagged: dict[int, torch.Tensor] = {}  # storage address → a tensor holding it alive
        self.on_fake: Counter = Counter()
        self.on_cpu: Counter = Counter()

    # --- where a tensor is ----------------------------------------------------------------------

    def _ptr(self, t: torch.Tensor) -> int:
        return t.untyped_storage().data_ptr()

    def is_fake(self, t: torch.Tensor) -> bool:
        if t.device.type == "meta":  # a real meta tensor: something made one without the mode
            raise AssertionError("a real meta tensor escaped the fake device")
        return t.numel() > 0 and self._ptr(t) in self.tagged

    def _tag(self, out):
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.numel() > 0:
                self.tagged.setdefault(self._ptr(t), t)
        return out

    # --- the mode -------------------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        owner = getattr(func, "__self__", None)
        if name == "__get__" and getattr(owner, "__name__", None) == "device" and isinstance(args[0], torch.Tensor):
            return FAKE if self.is_fake(args[0]) else func(*args, **kwargs)
        if name in BOOKKEEPING or func is torch.device:  # torch.device("meta") stays FAKE
            return func(*args, **kwargs)
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        fake_in = [t for t in tensors if self.is_fake(t)]

        if any(_is_fake(a) for a in tree_flatten((args, kwargs))[0]):  # made on, or moved to, FAKE
            args, kwargs = tree_map(lambda a: CPU if _is_fake(a) else a, (args, kwargs))
            out = func(*args, **kwargs)
            cpu_in = {self._ptr(t) for t in tensors if not self.is_fake(t) and t.numel() > 0}
            if isinstance(out, torch.Tensor) and out.numel() > 0 and self._ptr(out) in cpu_in:
                out = out.clone()  # .to() returned its CPU operand: the copy is what moves
            self.on_fake[name] += 1
            return self._tag(out)

        if name == "numpy" and fake_in:
            raise TypeError("can't convert meta device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
                            "to host memory first (the fake device stands for a GPU)")
        if name in TRANSFERS_TO_CPU and fake_in and (name == "cpu" or any(
                isinstance(a, (torch.device, str)) and torch.device(a) == CPU for a in (*args[1:], *kwargs.values()))):
            out = func(*args, **kwargs)
            self.on_cpu[name] += 1
            return out.clone() if self.is_fake(out) else out

        if name in COPIES or name == "__getitem__":
            target, rest = args[0], tensors[1:]
            if not self.is_fake(target) and any(self.is_fake(t) for t in rest) and name == "__getitem__":
                raise RuntimeError(f"indices should be either on cpu or on the same device as the indexed tensor "
                                   f"(cpu); got indices on the fake device (in {name})")
            out = func(*args, **kwargs)
            if name == "__getitem__" and self.is_fake(target):
                self.on_fake[name] += 1
                return self._tag(out)
            (self.on_fake if self.is_fake(target) else self.on_cpu)[name] += 1
            return out

        cpu_in = [t for t in tensors if not self.is_fake(t) and t.numel() > 0 and t.dim() > 0]
        if fake_in and cpu_in:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"meta (the fake device) and cpu! (in {name}: {len(cpu_in)} of {len(tensors)} operands "
                               f"on the CPU, shapes {[tuple(t.shape) for t in cpu_in]})")
        out = func(*args, **kwargs)
        if fake_in:
            self.on_fake[name] += 1
            return self._tag(out)
        self.on_cpu[name] += 1
        return out
