"""What this machine's hardware offers, asked in one place: which device ``"auto"`` means, and
whether a device runs bfloat16 natively (the CPU's bf16 instructions, a CUDA GPU's bf16 support)."""
from __future__ import annotations

from typing import Any

import torch

__all__ = ["auto_device", "resolve_device", "cpu_bf16", "native_bf16"]


def auto_device() -> torch.device:
    """``device="auto"``: the current CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device, setting: str = "device") -> torch.device:
    """``device`` as a torch.device, ``"auto"`` resolved; a device this machine cannot train on is
    refused with the fix, naming ``setting`` (``"device"``, or the CLI's ``"--device"``)."""
    if device == "auto":
        return auto_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{setting} {device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N' ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{setting} {device!r} was asked for but CUDA is not available: use {setting}='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{setting} {device!r}: fastwgan trains on 'cpu' or 'cuda' devices")
    return dev


def cpu_bf16() -> dict[str, Any]:
    """The CPU's bf16 instructions (Linux /proc/cpuinfo flags) and torch's vector capability."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:  # not Linux: torch's capability string is all there is
        pass
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "capability": torch.backends.cpu.get_cpu_capability(), "flags_read": bool(flags)}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively: a CUDA GPU with bf16 support, a CPU with AVX512-BF16
    or AMX (without them the CPU emulates bf16 in fp32 and gains nothing)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    flags = cpu_bf16()
    return bool(flags["avx512_bf16"] or flags["amx_bf16"])
