"""Shared by the hmr guest tests (no tests here): verbs enums under one flat name.

rdma-core 56's pyverbs has pyverbs.enums (flat IBV_* names); 65 replaced it with
pyverbs.libibverbs_enums, whose names live in enum classes (ibv_access_flags.IBV_...); 44's
(bookworm) lacks the FLUSH names.
"""
import ctypes
import enum
import mmap
import os
import types


# Names older pyverbs lacks (rdma-core 44, bookworm: no FLUSH), with their values in verbs.h.
_SINCE_45 = {"IBV_QP_EX_WITH_FLUSH": 1 << 11}


def _flat_enums():
    try:
        import pyverbs.enums as mod
        return types.SimpleNamespace(**{**_SINCE_45, **vars(mod)})
    except ImportError:
        import pyverbs.libibverbs_enums as mod
    names = {}
    for name in dir(mod):
        obj = getattr(mod, name)
        if isinstance(obj, type) and issubclass(obj, enum.Enum):
            names.update((m.name, m) for m in obj)
        elif name.startswith("IBV_"):
            names[name] = obj
    return types.SimpleNamespace(**names)


e = _flat_enums()

# RDMA FLUSH and ATOMIC WRITE entered the kernel's verbs in 6.2: hmr advertises and takes them
# from there (kmod/hmr_compat.h), never before.
KERNEL_HAS_FLUSH = tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (6, 2)


# Raw mappings for the memory tests (mmap.mmap hides addresses and MAP_FIXED).
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
MAP_FIXED = 0x10
MADV_DONTNEED = 4


def anon_map(length, prot=PROT_RW, addr=None):
    """A private anonymous mapping (at @addr, replacing what is there, if given)."""
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | (MAP_FIXED if addr else 0)
    got = libc.mmap(addr, length, prot, flags, -1, 0)
    assert got not in (None, ctypes.c_void_p(-1).value) and (addr is None or got == addr)
    return got


MADV_NOHUGEPAGE = 15


def quiet_map(length):
    """anon_map() that khugepaged leaves alone (MADV_NOHUGEPAGE, and no merging with neighbour
    mappings that lack it): no collapse invalidates it behind a test that counts invalidations."""
    addr = anon_map(length)
    assert libc.madvise(addr, length, MADV_NOHUGEPAGE) == 0, ctypes.get_errno()
    return addr


def unmap(addr, length):
    assert libc.munmap(addr, length) == 0
