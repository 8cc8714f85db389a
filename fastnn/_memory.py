"""Refusing allocations that cannot fit before making them (a clear ValueError instead of a MemoryError, or
of an allocation that succeeds lazily and gets the process OOM-killed when the pages are touched)."""
import os
import sys


class TooLargeError(ValueError):
    """An allocation the input asks for cannot fit in memory: bad input (the CLI exits 2), not a fault."""


def available_bytes():
    """Memory the system can give this process now: MemAvailable from /proc/meminfo (Linux), else
    sysconf's available physical pages; None when neither is known (then nothing is refused)."""
    try:
        with open("/proc/meminfo", "rb") as fh:     # a kernel file: never a FIFO, always small
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_fits(nbytes, what):
    """TooLargeError (a ValueError) naming ``what`` and the size when ``nbytes`` exceed the memory available
    now, or the address space (whether or not the available memory is known)."""
    if nbytes > sys.maxsize:
        raise TooLargeError(f"{what} needs {nbytes:,} bytes, more than this machine can address")
    available = available_bytes()
    if available is not None and nbytes > available:
        raise TooLargeError(f"{what} needs {nbytes:,} bytes, more than the {available:,} bytes of memory "
                         f"available")
