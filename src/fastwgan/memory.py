"""Requests that cannot fit are refused before they allocate: the bytes a request needs, estimated
from its sizes, against what this process can have.

What this process can have is the smaller of the machine's physical memory and what its
address-space limit (``ulimit -v``, ``RLIMIT_AS``) leaves beside what it already maps. The check
only refuses what cannot succeed; it does not promise that what passes fits beside everything
else running.
"""
from __future__ import annotations

import math
import os

__all__ = ["MemoryRequestError", "available_bytes", "require_memory", "gigabytes"]


class MemoryRequestError(ValueError):
    """A request that needs more memory than this process can have."""


def gigabytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def _physical() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system that says
        return math.inf


def _address_space_left() -> float:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError):
        return math.inf
    if soft == resource.RLIM_INFINITY:
        return math.inf
    try:  # what this process maps already counts against the limit
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return float(max(soft - mapped, 0))


def available_bytes() -> float:
    """The most memory one request of this process can get (inf where nothing says)."""
    return min(_physical(), _address_space_left())


def require_memory(nbytes: float, what: str, fix: str) -> None:
    """Raise :class:`MemoryRequestError` naming ``what`` needs ``nbytes`` and ``fix`` when more
    than :func:`available_bytes`."""
    have = available_bytes()
    if nbytes > have:
        raise MemoryRequestError(
            f"{what} would take about {gigabytes(nbytes)} of memory, but this process can have at most "
            f"{gigabytes(have)} (the machine's memory, or its address-space limit): {fix}"
        )
