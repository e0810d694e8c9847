#!/usr/bin/env python3
"""wire_ops: RC operations between two hosts over RoCEv2, every byte checked (pyverbs).

  wire_ops.py server --op OP [options]            the responder: its memory is the target
  wire_ops.py client --op OP [options] HOST       the requester: posts the operations

The two sides meet on TCP (--port, default 18515; the client retries for --connect-secs) and
exchange QP number, PSN, GID, path MTU, buffer address and rkey; the client also sends the run's
parameters (sizes, iterations, depth, seed), which the server adopts (--op must agree). Each
side uses one RC QP: path MTU = the smaller of the two ports' active MTUs, timeout 14,
retry_cnt 7, rnr_retry 7, max_rd_atomic / max_dest_rd_atomic 16, GID = the port's RoCE v2
GID of its IPv4 address (--ipv6: of its non-link-local IPv6 address; --gid-index overrides),
read from sysfs. The first PSNs lie within 2000 of 2^24, so every run crosses the PSN wrap.

Per size and iteration the server prepares (fills the target with a poison byte, posts the
receives, or for READ writes the pattern), says "go" with the iteration's offsets, and the client
posts --depth operations (each on its own region of the buffer, at an odd offset), waits for
their completions and says "done". Every iteration has a fresh pattern (random bytes from the
seed, size and iteration). Checked byte for byte, with 64 poison bytes either side unchanged:
  send, send_imm     the server checks what arrived (byte_len, immediate, data)
  write, write_imm   the server checks after the client's barrier SEND (write) or the
                     immediate's completion (write_imm), which RC orders after the data
  read               the client checks what it read
  cas, faa           a known sequence on one word (cas: every other compare fails): the client
                     checks each original value returned, the server the final word
  atomic_write       8 bytes per operation into its own aligned word (ibv_wr_atomic_write):
                     the server checks every word once the client saw the completions
  flush              a WRITE of each region, then a FLUSH (global visibility) of its range (the
                     last one of the whole MR) in the same batch (ibv_wr_rdma_write,
                     ibv_wr_flush): once the FLUSHes completed, the server checks the regions
                     with no barrier SEND (a FLUSH completes after the WRITEs before it)
Every completion must be IBV_WC_SUCCESS with the expected wr_id and opcode.

--odp registers the side's buffers with IBV_ACCESS_ON_DEMAND; a device without the RC ODP
capabilities its role needs for the operation makes the side exit 77 (skip).
--race dontneed|remap|fork (server, with --odp, send/write operations only): while the
transfers run, a thread repeatedly (every --race-pause-ms) does MADV_DONTNEED of the target
memory, or maps new anonymous memory over it (mmap MAP_FIXED: the old mapping goes and the new
one comes in one step; an explicit munmap first would leave a hole in which a transfer fails
by design), or forks a child that writes to every page of it and exits. Each operation then
also goes to a second, unchecked region that the thread works on while data lands in it
(MADV_DONTNEED and a new mapping lose what was there, by definition); fork keeps every byte,
so the fork thread works on the checked region too.

--late-recv SECS (server): each iteration's receives are posted SECS seconds after the client was
told to go, so its SENDs / WRITEs with immediate meet an empty receive queue and are answered
with RNR NAKs until then (rnr_retry 7: retried for ever, min_rnr_timer 12: 0.64 ms).

--no-qp-flush (server, --op flush): its QP is not enabled for FLUSH (no IBV_ACCESS_FLUSH_GLOBAL in
its access flags). --flush-status STATUS (client, --op flush): the FLUSHes are to complete with
STATUS instead (the WRITEs before them still succeed, and the server still checks their data);
use with --iters 1: a failed FLUSH leaves the QP in ERROR.

--uc (both sides): UC QPs instead of RC (send, send_imm, write, write_imm): nothing is
acknowledged, so a message lost on the link would be lost for good (a quiet link loses none).

--mw 1|2 (server; write, write_imm, read, cas, faa): the client reaches the target through a
memory window over it (type 1 bound by ibv_bind_mw, type 2 by an IBV_WR_BIND_MW WR on the
server's QP) instead of the MR's rkey; the MR has IBV_ACCESS_MW_BIND.

--expect-status STATUS --timeout-secs S (client): stream WRITEs (--depth outstanding) until
they fail; exit 0 when the first failed WR ends with STATUS (the others: STATUS or
IBV_WC_WR_FLUSH_ERR) within S seconds of the last successful completion. It prints
"streaming" once 8 WRITEs completed (the moment to take the peer away).

A server of send or send_imm that fails moves its QP to ERROR and counts the receives that then
complete (flushed), a SEND's receive that was being filled included.

Output: one JSON line (role, ops done, bytes checked, errors, the WC statuses seen by name).
Exit status: 0 everything matched and every WC succeeded; 1 a failure; 2 usage; 77 skip.
"""
import argparse
import collections
import ctypes
import json
import os
import random
import select
import socket
import struct
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guest"))
from test_hmr_util import MADV_DONTNEED, MAP_FIXED, PROT_RW, e, libc  # noqa: E402

from pyverbs.addr import AHAttr, GID, GlobalRoute  # noqa: E402
from pyverbs.cq import CQ  # noqa: E402
from pyverbs.device import Context  # noqa: E402
from pyverbs.mr import MR, MW, MWBind, MWBindInfo  # noqa: E402
from pyverbs.pd import PD  # noqa: E402
from pyverbs.qp import QP, QPAttr, QPCap, QPEx, QPInitAttr, QPInitAttrEx  # noqa: E402
from pyverbs.wr import SGE, RecvWR, SendWR  # noqa: E402

SKIP = 77
PAGE = 4096
GUARD = 64            # poison bytes checked on each side of every region
OFF_RANGE = 4032      # a region starts GUARD + (something below this) into its unit
ATOMIC_OFF = 64       # the atomic word's offset in the server's buffer
CHUNK = 1 << 20       # patterns above this repeat a random MiB, each page stamped
MAX_ERRORS = 20       # errors listed in the summary (all are counted)

# ibv_wc_status, by value
WC_STATUS = ["SUCCESS", "LOC_LEN_ERR", "LOC_QP_OP_ERR", "LOC_EEC_OP_ERR", "LOC_PROT_ERR",
             "WR_FLUSH_ERR", "MW_BIND_ERR", "BAD_RESP_ERR", "LOC_ACCESS_ERR", "REM_INV_REQ_ERR",
             "REM_ACCESS_ERR", "REM_OP_ERR", "RETRY_EXC_ERR", "RNR_RETRY_EXC_ERR",
             "LOC_RDD_VIOL_ERR", "REM_INV_RD_REQ_ERR", "REM_ABORT_ERR", "INV_EECN_ERR",
             "INV_EEC_STATE_ERR", "FATAL_ERR", "RESP_TIMEOUT_ERR", "GENERAL_ERR", "TM_ERR",
             "TM_RNDV_INCOMPLETE"]

OPS = {
    # name: (send opcode, requester WC opcode, requester ODP cap, responder ODP cap)
    "send": ("IBV_WR_SEND", "IBV_WC_SEND", "SEND", "RECV"),
    "send_imm": ("IBV_WR_SEND_WITH_IMM", "IBV_WC_SEND", "SEND", "RECV"),
    "write": ("IBV_WR_RDMA_WRITE", "IBV_WC_RDMA_WRITE", "WRITE", "WRITE"),
    "write_imm": ("IBV_WR_RDMA_WRITE_WITH_IMM", "IBV_WC_RDMA_WRITE", "WRITE", "WRITE"),
    "read": ("IBV_WR_RDMA_READ", "IBV_WC_RDMA_READ", "READ", "READ"),
    "cas": ("IBV_WR_ATOMIC_CMP_AND_SWP", "IBV_WC_COMP_SWAP", "ATOMIC", "ATOMIC"),
    "faa": ("IBV_WR_ATOMIC_FETCH_AND_ADD", "IBV_WC_FETCH_ADD", "ATOMIC", "ATOMIC"),
    "atomic_write": ("IBV_WR_ATOMIC_WRITE", "IBV_WC_ATOMIC_WRITE", "ATOMIC_WRITE",
                     "ATOMIC_WRITE"),
    "flush": ("IBV_WR_FLUSH", "IBV_WC_FLUSH", "FLUSH", "FLUSH"),
}
# enum values pyverbs may not name (rdma-core's verbs.h)
ENUM_FALLBACK = {"IBV_WC_FLUSH": 8, "IBV_WC_ATOMIC_WRITE": 9, "IBV_ODP_SUPPORT_FLUSH": 1 << 6,
                 "IBV_ODP_SUPPORT_ATOMIC_WRITE": 1 << 7, "IBV_ACCESS_FLUSH_GLOBAL": 1 << 8,
                 "IBV_QP_EX_WITH_ATOMIC_WRITE": 1 << 13, "IBV_QP_EX_WITH_FLUSH": 1 << 12,
                 "IBV_FLUSH_GLOBAL": 1, "IBV_FLUSH_RANGE": 0, "IBV_FLUSH_MR": 1}


def enum(name):
    return getattr(e, name, ENUM_FALLBACK.get(name))

SENDS = ("send", "send_imm")
WRITES = ("write", "write_imm")
ATOMICS = ("cas", "faa")
FLUSH_OPS = ("atomic_write", "flush")  # posted with the ibv_wr_* API (a QPEx)
ACCESS = (e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ |
          e.IBV_ACCESS_REMOTE_ATOMIC)
MTU_ENUM = {256: e.IBV_MTU_256, 512: e.IBV_MTU_512, 1024: e.IBV_MTU_1024,
            2048: e.IBV_MTU_2048, 4096: e.IBV_MTU_4096}
RACES = ("dontneed", "remap", "fork")


def status_name(status):
    return "IBV_WC_" + (WC_STATUS[status] if 0 <= status < len(WC_STATUS) else f"STATUS_{status}")


class Failed(Exception):
    """The run cannot go on (a WC error, a timeout, the peer aborted or went away)."""


class Skip(Exception):
    pass


# ---- patterns and the atomic plan: the same on both sides from the seed ----

def pattern(n, key):
    """@n fresh bytes for @key: random up to a MiB; beyond, a random MiB repeated with every
    4 KiB page stamped with @key and its offset (a page out of place shows)."""
    r = random.Random(key)
    if n <= CHUNK:
        return r.randbytes(n)
    block = r.randbytes(CHUNK)
    buf = bytearray(block * (n // CHUNK) + block[:n % CHUNK])
    stamp = struct.Struct("<QQ")
    for p in range(0, n - stamp.size + 1, PAGE):
        stamp.pack_into(buf, p, key & (2**64 - 1), p)
    return bytes(buf)


def key_of(seed, k, i, j):
    return ((seed * 1000003 + k) * 100003 + i) * 1009 + j


def poison_of(k, i):
    return (0xa5 + 17 * i + 29 * k) & 0xff


def imm_of(seed, k, i, j):
    return (seed * 2654435761 + k * 65537 + i * 257 + j) & 0xffffffff


def atomic_plan(op, seed, n):
    """(initial word, [(compare_add, swap, expected original)] * n, final word)."""
    r = random.Random(seed ^ 0x5eed)
    word = r.getrandbits(64)
    start, plan = word, []
    for i in range(n):
        if op == "faa":
            add = r.getrandbits(64)
            plan.append((add, 0, word))
            word = (word + add) & (2**64 - 1)
        else:
            new = r.getrandbits(64)
            if i % 2 == 0:   # the compare matches: swapped
                plan.append((word, new, word))
                word = new
            else:            # it does not: the word stays
                plan.append((word ^ (1 << (i % 64)), new, word))
    return start, plan, word


def region_off(k, i, j, unit):
    """Where unit @j of iteration @i of size @k starts in a slot."""
    return j * unit + GUARD + ((k * 7 + i * 3 + j) * 1357) % OFF_RANGE


# ---- device facts ----

def default_device():
    role = os.environ.get("HMR_ROLE")
    dev = os.environ.get("HMR_PEER_DEVICE" if role == "peer" else "HMR_SELF_DEVICE", "")
    if dev:
        return dev
    devs = sorted(os.listdir("/sys/class/infiniband")) if os.path.isdir("/sys/class/infiniband") else []
    return devs[0] if devs else "hmr0"


def find_gid(dev, ipv6):
    """The lowest index of the port's RoCE v2 GIDs of an IPv4 address (::ffff:a.b.c.d) or, with
    @ipv6, of a global IPv6 address (not fe80::/10)."""
    port = f"/sys/class/infiniband/{dev}/ports/1"
    found = []
    for name in os.listdir(f"{port}/gids"):
        try:
            with open(f"{port}/gids/{name}") as f:
                gid = f.read().strip()
            with open(f"{port}/gid_attrs/types/{name}") as f:
                kind = f.read().strip()
        except OSError:  # an empty entry has no type
            continue
        if kind != "RoCE v2" or set(gid) <= {"0", ":"}:
            continue
        v4 = gid.startswith("0000:0000:0000:0000:0000:ffff:")
        if (not v4 and not gid.startswith("fe8")) if ipv6 else v4:
            found.append(int(name))
    if not found:
        raise Failed(f"{dev} has no RoCE v2 GID of an {'IPv6' if ipv6 else 'IPv4'} address")
    return min(found)


# ---- memory ----

class Buffer:
    """An anonymous mapping, registered (ODP when asked; FLUSH_GLOBAL for a FLUSH target)."""

    def __init__(self, pd, length, odp, flush=False, mw=False):
        self.length = length
        self.addr = libc.mmap(None, length, PROT_RW, 0x22, -1, 0)  # MAP_PRIVATE | MAP_ANONYMOUS
        if self.addr in (None, ctypes.c_void_p(-1).value):
            raise Failed(f"mmap of {length} bytes failed: errno {ctypes.get_errno()}")
        ctypes.memset(self.addr, 0, length)
        self.mr = MR(pd, length, ACCESS | (enum("IBV_ACCESS_FLUSH_GLOBAL") if flush else 0) |
                     (e.IBV_ACCESS_ON_DEMAND if odp else 0) |
                     (e.IBV_ACCESS_MW_BIND if mw else 0), address=self.addr)

    def put(self, off, data):
        ctypes.memmove(self.addr + off, data, len(data))

    def get(self, off, n):
        return ctypes.string_at(self.addr + off, n)

    def fill(self, off, n, byte):
        ctypes.memset(self.addr + off, byte, n)

    def sge(self, off, n):
        return SGE(self.addr + off, n, self.mr.lkey)

    def close(self):
        self.mr.close()
        libc.munmap(self.addr, self.length)


class Race(threading.Thread):
    """Works on [addr, addr + length) every @pause seconds until stopped."""

    def __init__(self, kind, addr, length, pause):
        super().__init__(daemon=True)
        self.kind, self.addr, self.length, self.pause = kind, addr, length, pause
        self.stop = threading.Event()
        self.rounds, self.failures = 0, []

    def once(self):
        if self.kind == "dontneed":
            if libc.madvise(self.addr, self.length, MADV_DONTNEED):
                self.failures.append(f"madvise: errno {ctypes.get_errno()}")
        elif self.kind == "remap":
            got = libc.mmap(self.addr, self.length, PROT_RW, 0x22 | MAP_FIXED, -1, 0)
            if got != self.addr:
                self.failures.append(f"mmap MAP_FIXED: {got}, errno {ctypes.get_errno()}")
        else:
            with warnings.catch_warnings():  # a fork of a process with threads
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                for p in range(0, self.length, PAGE):  # copy on write: the child's own pages
                    ctypes.memset(self.addr + p, 0x66, 1)
                os._exit(0)
            _, st = os.waitpid(pid, 0)
            if st:
                self.failures.append(f"child status {st}")

    def run(self):
        while not self.stop.is_set():
            self.once()
            self.rounds += 1
            self.stop.wait(self.pause)

    def end(self):
        self.stop.set()
        self.join(timeout=60)


# ---- control channel (TCP, one JSON object a line) ----

class Ctl:
    def __init__(self, sock):
        self.sock, self.buf, self.msgs = sock, b"", collections.deque()

    def send(self, **msg):
        self.sock.sendall((json.dumps(msg) + "\n").encode())

    def _fill(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return
        data = self.sock.recv(1 << 16)
        if not data:
            raise Failed("the control connection closed")
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if "abort" in msg:
                if msg.get("skip"):
                    raise Skip(f"the peer skips: {msg['abort']}")
                raise Failed(f"the peer aborted: {msg['abort']}")
            self.msgs.append(msg)

    def check(self, timeout):
        """Wait up to @timeout for messages (raises if the peer aborted)."""
        self._fill(timeout)

    def recv(self, want, timeout):
        """The next message, which must be a @want one."""
        end = time.monotonic() + timeout
        while not self.msgs:
            if time.monotonic() > end:
                raise Failed(f"no '{want}' from the peer within {timeout:.0f} s")
            self._fill(min(1.0, end - time.monotonic()))
        msg = self.msgs.popleft()
        if want not in msg:
            raise Failed(f"expected '{want}' from the peer, got {msg}")
        return msg


# ---- one side ----

class Side:
    def __init__(self, args):
        self.args = args
        self.role = args.role
        self.dev = args.dev or default_device()
        self.errors, self.statuses = [], collections.Counter()
        self.ops = self.bytes = 0
        self.start = time.monotonic()
        self.race = self.peer = self.path_mtu = None
        self.extra = {}
        self.ctx = Context(name=self.dev)
        self.gid_index = args.gid_index if args.gid_index is not None else \
            find_gid(self.dev, args.ipv6)
        self.gid = self.ctx.query_gid(1, self.gid_index).gid
        self.mtu = 128 << self.ctx.query_port(1).active_mtu
        self.psn = (1 << 24) - 1 - random.randrange(2000)

    def setup(self):
        self.pd = PD(self.ctx)
        self.scq = CQ(self.ctx, 1024)
        self.rcq = CQ(self.ctx, 1024)
        cap = QPCap(max_send_wr=256, max_recv_wr=256, max_send_sge=1, max_recv_sge=1)
        if self.args.op in FLUSH_OPS:
            ops = (e.IBV_QP_EX_WITH_RDMA_WRITE | e.IBV_QP_EX_WITH_SEND |
                   enum("IBV_QP_EX_WITH_ATOMIC_WRITE") | enum("IBV_QP_EX_WITH_FLUSH"))
            self.qp = QPEx(self.ctx, QPInitAttrEx(
                qp_type=e.IBV_QPT_RC, scq=self.scq, rcq=self.rcq, cap=cap, sq_sig_all=1,
                pd=self.pd, comp_mask=e.IBV_QP_INIT_ATTR_PD | e.IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
                send_ops_flags=ops))
            return
        self.qp = QP(self.pd, QPInitAttr(qp_type=e.IBV_QPT_UC if self.args.uc else
                                         e.IBV_QPT_RC, scq=self.scq, rcq=self.rcq,
                                         cap=cap, sq_sig_all=1))

    def error(self, msg):
        self.errors.append(msg)

    def odp_check(self):
        """Skip when --odp was asked and the device lacks it for this role's part of --op."""
        if not self.args.odp:
            return
        cap = OPS[self.args.op][2 if self.role == "client" else 3]
        caps = self.ctx.query_device_ex().odp_caps
        if not caps.general_caps & e.IBV_ODP_SUPPORT:
            raise Skip(f"{self.dev} has no ODP")
        if not caps.rc_odp_caps & enum(f"IBV_ODP_SUPPORT_{cap}"):
            raise Skip(f"{self.dev} lacks the RC ODP capability {cap} ({self.args.op}, "
                       f"{self.role})")

    def info(self):
        return {"qpn": self.qp.qp_num, "psn": self.psn, "gid": self.gid, "mtu": self.mtu}

    def connect(self, remote):
        """INIT, RTR, RTS. UC (--uc): no read/atomic rights, rd_atomic depths, timeouts or
        retries."""
        uc = self.args.uc
        mtu = min(self.mtu, remote["mtu"], 4096)
        a = QPAttr(qp_state=e.IBV_QPS_INIT)
        # a FLUSH needs the responder QP's leave too (rxe answers invalid request without it)
        flush = enum("IBV_ACCESS_FLUSH_GLOBAL") if self.args.op in FLUSH_OPS else 0
        if getattr(self.args, "no_qp_flush", False):
            flush = 0
        a.pkey_index, a.port_num = 0, 1
        a.qp_access_flags = e.IBV_ACCESS_LOCAL_WRITE | e.IBV_ACCESS_REMOTE_WRITE if uc else \
            ACCESS | flush
        self.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_PKEY_INDEX | e.IBV_QP_PORT |
                       e.IBV_QP_ACCESS_FLAGS)
        a = QPAttr(qp_state=e.IBV_QPS_RTR)
        a.ah_attr = AHAttr(gr=GlobalRoute(dgid=GID(remote["gid"]), sgid_index=self.gid_index,
                                          hop_limit=64), is_global=1, port_num=1)
        a.path_mtu, a.dest_qp_num, a.rq_psn = MTU_ENUM[mtu], remote["qpn"], remote["psn"]
        a.max_dest_rd_atomic, a.min_rnr_timer = 16, 12
        self.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_AV | e.IBV_QP_PATH_MTU | e.IBV_QP_DEST_QPN |
                       e.IBV_QP_RQ_PSN | (0 if uc else e.IBV_QP_MAX_DEST_RD_ATOMIC |
                                          e.IBV_QP_MIN_RNR_TIMER))
        a = QPAttr(qp_state=e.IBV_QPS_RTS)
        a.timeout, a.retry_cnt, a.rnr_retry = 14, 7, 7
        a.sq_psn, a.max_rd_atomic = self.psn, 16
        self.qp.modify(a, e.IBV_QP_STATE | e.IBV_QP_SQ_PSN | (0 if uc else e.IBV_QP_TIMEOUT |
                       e.IBV_QP_RETRY_CNT | e.IBV_QP_RNR_RETRY | e.IBV_QP_MAX_QP_RD_ATOMIC))
        self.path_mtu = mtu
        return mtu

    def bind_window(self, buf, ctl):
        """After connect: a memory window of type --mw over @buf, bound on the QP with the key
        window_key() said; waits for the bind's completion."""
        access = e.IBV_ACCESS_REMOTE_WRITE | e.IBV_ACCESS_REMOTE_READ | \
            e.IBV_ACCESS_REMOTE_ATOMIC
        info = MWBindInfo(buf.mr, buf.addr, buf.length, access)
        if self.args.mw == 1:
            self.qp.bind_mw(self.mw, MWBind(info, e.IBV_SEND_SIGNALED))
        else:
            wr = SendWR(wr_id=0, opcode=e.IBV_WR_BIND_MW, send_flags=e.IBV_SEND_SIGNALED)
            wr.set_bind_wr(self.mw, info)
            self.qp.post_send(wr)
        wcs = self.wait_wcs(self.scq, 1, 60, ctl, "memory window bind")
        self.check_wcs(wcs, [(0, e.IBV_WC_BIND_MW)], "memory window bind")
        if self.errors:
            raise Failed(f"binding a type {self.args.mw} memory window: {self.errors[0]}")

    def window_key(self):
        """The R_Key the window will have once bound (both ways: the next key of the MW's)."""
        self.mw = MW(self.pd, e.IBV_MW_TYPE_1 if self.args.mw == 1 else e.IBV_MW_TYPE_2)
        key = self.mw.rkey
        return (key & ~0xff) | ((key + 1) & 0xff)

    def flush_receives(self, secs=10):
        """After a failure: the QP to ERROR, and the receives it still had (one a SEND was
        arriving into included) collected as they complete flushed."""
        try:
            self.qp.modify(QPAttr(qp_state=e.IBV_QPS_ERR), e.IBV_QP_STATE)
        except Exception as err:  # noqa: BLE001 -- reported, not raised: a failure is on its way
            self.error(f"modify to ERROR: {err}")
            return
        end = time.monotonic() + secs
        while time.monotonic() < end:
            if not self.poll(self.rcq, 16):
                time.sleep(0.05)

    def poll(self, cq, n):
        _, got = cq.poll(n)
        for wc in got:
            self.statuses[status_name(wc.status)] += 1
        return got

    def wait_wcs(self, cq, n, timeout, ctl, what):
        """@n completions of @cq; raises on a timeout or when the peer aborts."""
        wcs, delay = [], 0.0005
        end = time.monotonic() + timeout
        while len(wcs) < n:
            got = self.poll(cq, n - len(wcs))
            if got:
                wcs += got
                delay = 0.0005
                continue
            if time.monotonic() > end:
                raise Failed(f"{what}: {len(wcs)} of {n} completions within {timeout:.0f} s "
                             f"({[status_name(w.status) for w in wcs]})")
            ctl.check(delay)  # the poll's pause, watching for the peer's abort
            delay = min(delay * 2, 0.01)
        return wcs

    def check_wcs(self, wcs, expect, what):
        """@expect: [(wr_id, opcode[, status])] in order (status: IBV_WC_SUCCESS unless given;
        a failed WC's opcode is not defined). A WC that failed unexpectedly ends the run (its
        QP is in ERROR)."""
        want = {x[0]: x[2] if len(x) > 2 else e.IBV_WC_SUCCESS for x in expect}
        bad = [w for w in wcs if w.status != want.get(w.wr_id, e.IBV_WC_SUCCESS)]
        if bad:
            raise Failed(f"{what}: " + ", ".join(
                f"wr_id {w.wr_id} {status_name(w.status)} (vendor_err {w.vendor_err})"
                for w in bad))
        for w, (wr_id, opcode, *_) in zip(wcs, expect):
            wrong_op = w.status == e.IBV_WC_SUCCESS and w.opcode != opcode
            if w.wr_id != wr_id or wrong_op or w.qp_num != self.qp.qp_num:
                self.error(f"{what}: completion wr_id {w.wr_id} opcode {w.opcode} QP {w.qp_num}, "
                           f"expected wr_id {wr_id} opcode {opcode} QP {self.qp.qp_num}")

    def check_region(self, buf, off, data, poison, what):
        """@data at @off of @buf, with GUARD bytes of @poison unchanged on either side."""
        n = len(data)
        got = buf.get(off - GUARD, n + 2 * GUARD)
        want = bytes([poison]) * GUARD + data + bytes([poison]) * GUARD
        if got == want:
            self.bytes += n
            return True
        diffs = [x for x in range(len(want)) if got[x] != want[x]]
        first = diffs[0]
        where = ("before the data" if first < GUARD else
                 "after the data" if first >= GUARD + n else f"at data byte {first - GUARD}")
        self.error(f"{what}: {len(diffs)} of {n} bytes (+{2 * GUARD} guard) differ, the first "
                   f"{where}: got {got[first:first + 16].hex()} expected "
                   f"{want[first:first + 16].hex()}")
        return False

    def summary(self):
        out = {"role": self.role, "op": self.args.op, "dev": self.dev,
               "gid_index": self.gid_index, "gid": self.gid, "path_mtu": self.path_mtu,
               "odp": bool(self.args.odp), "ops": self.ops, "bytes": self.bytes,
               "errors": len(self.errors), "error_list": self.errors[:MAX_ERRORS],
               "statuses": dict(self.statuses), "secs": round(time.monotonic() - self.start, 2),
               "peer_errors": None if self.peer is None else self.peer.get("errors")}
        if self.race:
            out.update(race=self.race.kind, race_rounds=self.race.rounds,
                       race_failures=self.race.failures[:MAX_ERRORS])
        out.update(self.extra)
        return out


def unit_len(max_size):
    """Bytes of one region's unit: the largest size, its guards and the offsets' range."""
    return -(-(max_size + 2 * GUARD + OFF_RANGE) // PAGE) * PAGE


def default_sizes(mtu):
    return [0, 1, mtu - 1, mtu, mtu + 1, 4096, 1 << 20]


def wc_timeout(args, nbytes):
    """How long completions may take: the base, plus the bytes at a slow emulated pace."""
    return args.wc_timeout + nbytes / 20e3


# ---- server (the responder: its buffer is the target) ----

def serve(args):
    side = Side(args)
    side.odp_check()
    if args.race and not args.odp:
        raise Skip("--race needs --odp (a pinned MR does not follow the mapping)")
    side.setup()
    lsock = socket.create_server(("", args.port), family=socket.AF_INET6, dualstack_ipv6=True)
    lsock.settimeout(args.accept_secs)
    try:
        sock, _ = lsock.accept()
    except socket.timeout:
        raise Failed(f"no client connected within {args.accept_secs} s")
    finally:
        lsock.close()
    sock.settimeout(None)
    return converse(side, Ctl(sock), run_server)


def converse(side, ctl, body):
    """Run @body; a failure is recorded and told to the peer, a skip told and raised."""
    try:
        body(side, ctl)
    except Skip as s:
        try:
            ctl.send(abort=str(s), skip=True)
        except OSError:
            pass
        raise
    except Failed as f:
        side.error(str(f))
        try:
            ctl.send(abort=str(f))
        except OSError:
            pass
        if side.role == "server" and side.args.op in SENDS:
            side.flush_receives()
    finally:
        if side.race:
            side.race.end()
        # The window, then the QP, before the MR: rxe refuses to deregister an MR while a window
        # over it lives on (EINVAL; its responder keeps the last window used until the QP goes),
        # and a type 2 window it never let go of stalls its QP's destroy (a WARN).
        if getattr(side, "mw", None):
            side.mw.close()
            side.qp.close()
    return side


def run_server(side, ctl):
    args = side.args
    hello = ctl.recv("hello", 300)["hello"]
    op = args.op
    if hello["op"] != op:
        raise Failed(f"the client runs {hello['op']}, this server {op}")
    sizes, iters, depth, seed = hello["sizes"], hello["iters"], hello["depth"], hello["seed"]
    side.extra.update(sizes=sizes, iters=iters, depth=depth)
    unit = unit_len(max(sizes))
    slot = depth * unit
    copies = [0, slot] if args.race else [0]
    target = Buffer(side.pd, slot * len(copies), args.odp, op == "flush", mw=bool(args.mw))
    ctlbuf = Buffer(side.pd, PAGE, False)  # barriers and immediates' receives: not the data
    rkey = side.window_key() if args.mw else target.mr.rkey
    ctl.send(hello={**side.info(), "addr": target.addr, "rkey": rkey,
                    "length": target.length, "copies": copies})
    side.connect(hello)
    if args.mw:
        side.bind_window(target, ctl)
        side.extra.update(mw=args.mw, rkey=rkey)
    if args.race:
        # fork keeps every byte: it works on the checked slot too; the others on the second one
        lo, n = (0, 2 * slot) if args.race == "fork" else (slot, slot)
        side.race = Race(args.race, target.addr + lo, n, args.race_pause_ms / 1000)
        side.race.start()
    if hello["stream"]:
        ctl.recv("end", 1e9)  # the client streams WRITEs until the test takes this host away
        return
    final = None
    if op in ATOMICS:
        start, _, final = atomic_plan(op, seed, iters * depth)
        target.put(ATOMIC_OFF, struct.pack("<Q", start))
    barrier = 1 << 20
    for k, size in enumerate(sizes):
        for i in range(iters):
            poison = poison_of(k, i)
            offs = [region_off(k, i, j, unit) for j in range(depth)]
            expect, recvs = [], []
            if op == "atomic_write":
                target.fill(0, ATOMIC_OFF + 8 * depth + GUARD, poison)
            for j, off in enumerate(offs):
                for c, base in enumerate(copies):
                    if op in ATOMICS or op == "atomic_write":
                        continue  # words at ATOMIC_OFF
                    target.fill(base + off - GUARD, size + 2 * GUARD, poison)
                    if op == "read":
                        target.put(base + off, pattern(size, key_of(seed, k, i, j)))
                    wr_id = (j << 1) | c
                    if op in SENDS:
                        recvs.append(RecvWR(wr_id=wr_id, num_sge=1,
                                            sg=[target.sge(base + off, size + GUARD)]))
                        expect.append((wr_id, e.IBV_WC_RECV))
                    elif op == "write_imm":
                        recvs.append(RecvWR(wr_id=wr_id, num_sge=1, sg=[ctlbuf.sge(0, 16)]))
                        expect.append((wr_id, e.IBV_WC_RECV_RDMA_WITH_IMM))
            if op == "write":
                recvs.append(RecvWR(wr_id=barrier, num_sge=1, sg=[ctlbuf.sge(0, 64)]))
                expect.append((barrier, e.IBV_WC_RECV))
            if not args.late_recv:
                for wr in recvs:
                    side.qp.post_recv(wr)
            ctl.send(go=[k, i], offs=offs)
            if args.late_recv:  # the requests meet an empty receive queue: RNR NAKs
                time.sleep(args.late_recv)
                for wr in recvs:
                    side.qp.post_recv(wr)
            what = f"{op} size {size} iteration {i}"
            wcs = side.wait_wcs(side.rcq, len(expect), wc_timeout(args, size * len(expect)),
                                ctl, what)
            side.check_wcs(wcs, expect, what)
            for w, (wr_id, _) in zip(wcs, expect):
                if wr_id == barrier:
                    got = ctlbuf.get(0, 8)
                    if w.byte_len != 8 or got != struct.pack("<II", k, i):
                        side.error(f"{what}: barrier of {w.byte_len} bytes: {got.hex()}")
                    continue
                j = wr_id >> 1
                if w.byte_len != size:
                    side.error(f"{what}: receive {wr_id} byte_len {w.byte_len}")
                has_imm = bool(w.wc_flags & e.IBV_WC_WITH_IMM)
                if has_imm != op.endswith("_imm") or \
                        (has_imm and w.imm_data != imm_of(seed, k, i, j)):
                    side.error(f"{what}: receive {wr_id} immediate {has_imm} {w.imm_data:#x}, "
                               f"expected {imm_of(seed, k, i, j):#x}")
            if op in SENDS or op in WRITES:
                for j, off in enumerate(offs):
                    if side.check_region(target, off, pattern(size, key_of(seed, k, i, j)),
                                         poison, f"{what} unit {j}"):
                        side.ops += 1
            ctl.recv("done", wc_timeout(args, size * depth * len(copies)) + 120)
            if op == "read" or op in ATOMICS:
                side.ops += depth
            elif op == "flush":
                for j, off in enumerate(offs):
                    if side.check_region(target, off, pattern(size, key_of(seed, k, i, j)),
                                         poison, f"{what} unit {j}"):
                        side.ops += 1
            elif op == "atomic_write":
                words = pattern(8 * depth, key_of(seed, k, i, 0))
                if side.check_region(target, ATOMIC_OFF, words, poison, what):
                    side.ops += depth
    if final is not None:
        got = struct.unpack("<Q", target.get(ATOMIC_OFF, 8))[0]
        if got != final:
            side.error(f"{op}: the word is {got:#x} after the sequence, expected {final:#x}")
        else:
            side.bytes += 8
    side.peer = ctl.recv("end", 300)["end"]
    ctl.send(end={"errors": len(side.errors)})


# ---- client (the requester) ----

def connect_to(host, port, secs):
    end = time.monotonic() + secs
    while True:
        try:
            return socket.create_connection((host, port), timeout=10)
        except OSError as err:
            if time.monotonic() > end:
                raise Failed(f"cannot connect to {host}:{port} within {secs} s: {err}")
            time.sleep(0.5)


def client(args):
    side = Side(args)
    side.odp_check()
    side.setup()
    sock = connect_to(args.host, args.port, args.connect_secs)
    sock.settimeout(None)
    body = run_stream if args.expect_status else \
        run_client_wr if args.op in FLUSH_OPS else run_client
    return converse(side, Ctl(sock), body)


def hello_exchange(side, ctl, stream):
    args = side.args
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else \
        default_sizes(min(side.mtu, 4096))
    ctl.send(hello={**side.info(), "op": args.op, "sizes": sizes, "iters": args.iters,
                    "depth": args.depth, "seed": seed, "stream": stream})
    remote = ctl.recv("hello", 300)["hello"]
    mtu = side.connect(remote)
    if not args.sizes and mtu != min(side.mtu, 4096):
        raise Failed(f"the path MTU {mtu} is not this port's {side.mtu}: pass --sizes")
    side.extra.update(sizes=sizes, iters=args.iters, depth=args.depth, seed=seed)
    return remote, sizes, seed


def recv_go(ctl, args, k, i, nbytes):
    """The server's go for size @k, iteration @i (it has prepared its memory)."""
    go = ctl.recv("go", wc_timeout(args, nbytes) + 300)
    if go["go"] != [k, i]:
        raise Failed(f"the server is at {go['go']}, this client at {[k, i]}")
    return go


def client_start(side, ctl):
    """Meet the server; the local buffer of --depth units of the largest size."""
    remote, sizes, seed = hello_exchange(side, ctl, False)
    unit = unit_len(max(sizes))
    return remote, sizes, seed, unit, Buffer(side.pd, side.args.depth * unit, side.args.odp)


def run_client(side, ctl):
    args = side.args
    op, depth = args.op, args.depth
    remote, sizes, seed, unit, local = client_start(side, ctl)
    ctlbuf = Buffer(side.pd, PAGE, args.odp and op in ATOMICS)  # atomics' results land here
    opcode, wc_opcode = getattr(e, OPS[op][0]), getattr(e, OPS[op][1])
    plan = atomic_plan(op, seed, args.iters * depth)[1] if op in ATOMICS else None
    barrier = 1 << 20
    for k, size in enumerate(sizes):
        for i in range(args.iters):
            go = recv_go(ctl, args, k, i, size * depth)
            what = f"{op} size {size} iteration {i}"
            poison = poison_of(k, i)
            # local regions at other offsets than the remote ones
            loffs = [region_off(k, i + 1, j, unit) for j in range(depth)]
            expect, nbytes = [], 0
            for j in range(depth):
                if op == "read":
                    local.fill(loffs[j] - GUARD, size + 2 * GUARD, poison)
                elif op not in ATOMICS:
                    local.put(loffs[j], pattern(size, key_of(seed, k, i, j)))
                for c, base in enumerate(remote["copies"]):
                    wr_id = (j << 1) | c
                    if op in ATOMICS:
                        ctlbuf.fill(64 + 8 * j, 8, poison)
                        sge = ctlbuf.sge(64 + 8 * j, 8)
                    else:
                        sge = local.sge(loffs[j], size)
                    wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1, sg=[sge],
                                send_flags=e.IBV_SEND_SIGNALED,
                                imm_data=imm_of(seed, k, i, j) if op.endswith("_imm") else 0)
                    if op in ATOMICS:
                        compare_add, swap, _ = plan[i * depth + j]
                        wr.set_wr_atomic(remote["rkey"], remote["addr"] + ATOMIC_OFF,
                                         compare_add, swap)
                    elif op not in SENDS:
                        wr.set_wr_rdma(remote["rkey"], remote["addr"] + base + go["offs"][j])
                    side.qp.post_send(wr)
                    expect.append((wr_id, wc_opcode))
                    nbytes += size
            if op == "write":
                ctlbuf.put(0, struct.pack("<II", k, i))
                side.qp.post_send(SendWR(wr_id=barrier, opcode=e.IBV_WR_SEND, num_sge=1,
                                         sg=[ctlbuf.sge(0, 8)], send_flags=e.IBV_SEND_SIGNALED))
                expect.append((barrier, e.IBV_WC_SEND))
            wcs = side.wait_wcs(side.scq, len(expect), wc_timeout(args, nbytes), ctl, what)
            side.check_wcs(wcs, expect, what)
            for j in range(depth):
                if op == "read":
                    if side.check_region(local, loffs[j], pattern(size, key_of(seed, k, i, j)),
                                         poison, f"{what} unit {j}"):
                        side.ops += 1
                elif op in ATOMICS:
                    got = struct.unpack("<Q", ctlbuf.get(64 + 8 * j, 8))[0]
                    want = plan[i * depth + j][2]
                    if got != want:
                        side.error(f"{what} unit {j}: original value {got:#x}, "
                                   f"expected {want:#x}")
                    else:
                        side.ops += 1
                        side.bytes += 8
                else:
                    side.ops += len(remote["copies"])
                    side.bytes += size * len(remote["copies"])
            ctl.send(done=[k, i])
    ctl.send(end={"errors": len(side.errors)})
    side.peer = ctl.recv("end", 300)["end"]


def post_flush_ops(side, op, remote, go, local, loffs, size, words):
    """One batch (ibv_wr_start .. ibv_wr_complete): per unit j, an ATOMIC WRITE of its word, or
    a WRITE of its region and a FLUSH of that range (the last unit: of the whole MR).
    Returns the completions to expect."""
    qp, expect = side.qp, []
    qp.wr_start()
    for j in range(len(loffs)):
        qp.wr_id, qp.wr_flags = j, e.IBV_SEND_SIGNALED
        if op == "atomic_write":
            qp.wr_atomic_write(remote["rkey"], remote["addr"] + ATOMIC_OFF + 8 * j,
                               words[8 * j:8 * j + 8])
            expect.append((j, enum("IBV_WC_ATOMIC_WRITE")))
            continue
        addr = remote["addr"] + go["offs"][j]
        qp.wr_rdma_write(remote["rkey"], addr)
        qp.wr_set_sge(local.sge(loffs[j], size))
        expect.append((j, e.IBV_WC_RDMA_WRITE))
        qp.wr_id, qp.wr_flags = 1000 + j, e.IBV_SEND_SIGNALED
        last = j == len(loffs) - 1
        qp.wr_flush(remote["rkey"], remote["addr"] if last else addr,
                    remote["length"] if last else size, enum("IBV_FLUSH_GLOBAL"),
                    enum("IBV_FLUSH_MR") if last else enum("IBV_FLUSH_RANGE"))
        status = enum(side.args.flush_status) if side.args.flush_status else e.IBV_WC_SUCCESS
        expect.append((1000 + j, enum("IBV_WC_FLUSH"), status))
    qp.wr_complete()
    return expect


def run_client_wr(side, ctl):
    """atomic_write and flush: posted with the ibv_wr_* API."""
    args = side.args
    op, depth = args.op, args.depth
    remote, sizes, seed, unit, local = client_start(side, ctl)
    for k, size in enumerate(sizes):
        for i in range(args.iters):
            go = recv_go(ctl, args, k, i, size * depth)
            what = f"{op} size {size} iteration {i}"
            loffs = [region_off(k, i + 1, j, unit) for j in range(depth)]
            for j in range(depth):
                local.put(loffs[j], pattern(size, key_of(seed, k, i, j)))
            expect = post_flush_ops(side, op, remote, go, local, loffs, size,
                                    pattern(8 * depth, key_of(seed, k, i, 0)))
            wcs = side.wait_wcs(side.scq, len(expect), wc_timeout(args, size * depth), ctl, what)
            side.check_wcs(wcs, expect, what)
            side.ops += depth
            side.bytes += 8 * depth if op == "atomic_write" else size * depth
            ctl.send(done=[k, i])
    ctl.send(end={"errors": len(side.errors)})
    side.peer = ctl.recv("end", 300)["end"]


def run_stream(side, ctl):
    """--expect-status: WRITEs of the largest size, --depth outstanding, until they fail."""
    args = side.args
    want = "IBV_WC_" + args.expect_status.removeprefix("IBV_WC_")
    remote, sizes, _ = hello_exchange(side, ctl, True)
    size = max(sizes)
    local = Buffer(side.pd, unit_len(size), args.odp)
    local.put(GUARD, pattern(size, 1))

    def post(n):
        wr = SendWR(wr_id=n, opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[local.sge(GUARD, size)],
                    send_flags=e.IBV_SEND_SIGNALED)
        wr.set_wr_rdma(remote["rkey"], remote["addr"] + GUARD)
        side.qp.post_send(wr)

    posted = done = 0
    for _ in range(args.depth):
        post(posted)
        posted += 1
    start = last_ok = last_wc = time.monotonic()
    first_err = err_at = None
    announced = False
    while done < posted:
        now = time.monotonic()
        wcs = side.poll(side.scq, 16)
        if not wcs:
            if first_err is None and now - last_ok > args.timeout_secs:
                raise Failed(f"no completion within {args.timeout_secs} s of the last successful "
                             f"one ({done} of {posted} completed)")
            if first_err is not None and now - last_wc > args.timeout_secs:
                raise Failed(f"after {first_err}, {posted - done} WRs never completed")
            if now - start > args.duration:
                raise Failed(f"the WRITEs did not fail within {args.duration} s")
            time.sleep(0.002)
            continue
        last_wc = now
        for wc in wcs:
            done += 1
            name = status_name(wc.status)
            if wc.status == e.IBV_WC_SUCCESS and first_err is None:
                last_ok = now
                side.ops += 1
                side.bytes += size
                post(posted)
                posted += 1
                if side.ops == 8 and not announced:
                    print("streaming", flush=True)
                    announced = True
            elif first_err is None:
                first_err, err_at = name, now
                side.extra.update(first_error=name, first_error_wr=wc.wr_id,
                                  error_after_secs=round(now - last_ok, 2))
            elif name not in (want, "IBV_WC_WR_FLUSH_ERR"):
                side.error(f"WR {wc.wr_id} after the first failure ended with {name}")
    side.extra.update(outstanding_completed=True)
    if first_err != want:
        side.error(f"the first failed WR ended with {first_err}, expected {want}")
    elif err_at - last_ok > args.timeout_secs:
        side.error(f"{want} came {err_at - last_ok:.1f} s after the last successful WRITE "
                   f"(limit {args.timeout_secs} s)")


# ---- main ----

def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("role", choices=("server", "client"))
    p.add_argument("host", nargs="?", help="the server's address (client)")
    p.add_argument("--op", choices=OPS, default="write")
    p.add_argument("--sizes", help="comma-separated byte counts (default: 0, 1, MTU-1, MTU, "
                   "MTU+1, 4096, 1 MiB)")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--depth", type=int, default=1, help="operations per iteration, each on its "
                   "own region")
    p.add_argument("--odp", action="store_true")
    p.add_argument("--race", choices=RACES)
    p.add_argument("--race-pause-ms", type=float, default=10.0)
    p.add_argument("--dev")
    p.add_argument("--port", type=int, default=18515)
    p.add_argument("--gid-index", type=int)
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("--seed", type=int)
    p.add_argument("--connect-secs", type=float, default=20)
    p.add_argument("--accept-secs", type=float, default=300)
    p.add_argument("--wc-timeout", type=float, default=120,
                   help="seconds a completion may take (plus the bytes at 20 kB/s)")
    p.add_argument("--late-recv", type=float, default=0, help="server: post each iteration's "
                   "receives this many seconds after telling the client to go (RNR NAKs)")
    p.add_argument("--no-qp-flush", action="store_true")
    p.add_argument("--flush-status")
    p.add_argument("--uc", action="store_true")
    p.add_argument("--mw", type=int, choices=(1, 2))
    p.add_argument("--expect-status")
    p.add_argument("--timeout-secs", type=float, default=30)
    p.add_argument("--duration", type=float, default=900)
    args = p.parse_args(argv)
    if args.role == "client" and not args.host:
        p.error("the client needs the server's HOST")
    if args.race and args.op not in SENDS + WRITES:
        p.error("--race goes with send, send_imm, write or write_imm")
    if args.race and args.role != "server":
        p.error("--race is for the server (the side whose memory is the target)")
    if args.expect_status is not None:
        if args.role != "client":
            p.error("--expect-status is for the client")
        name = args.expect_status.removeprefix("IBV_WC_")
        if name not in WC_STATUS:
            p.error(f"unknown status {args.expect_status}")
    if args.uc and args.op not in SENDS + WRITES:
        p.error("--uc goes with send, send_imm, write or write_imm")
    if args.mw and (args.role != "server" or args.op not in WRITES + ATOMICS + ("read",)):
        p.error("--mw is for the server, with write, write_imm, read, cas or faa")
    if args.iters < 1 or args.depth < 1 or args.depth > 64:
        p.error("--iters >= 1, 1 <= --depth <= 64")
    if args.op in ATOMICS or args.op == "atomic_write":
        args.sizes = args.sizes or "8"
    if args.flush_status:
        args.flush_status = "IBV_WC_" + args.flush_status.removeprefix("IBV_WC_")
        if enum(args.flush_status) is None:
            p.error(f"--flush-status: no status {args.flush_status}")
    return args


def main(argv):
    args = parse(argv)
    try:
        side = serve(args) if args.role == "server" else client(args)
    except Skip as s:
        print(json.dumps({"role": args.role, "op": args.op, "skip": str(s)}), flush=True)
        return SKIP
    except Failed as f:  # before the peers met
        print(json.dumps({"role": args.role, "op": args.op, "errors": 1,
                          "error_list": [str(f)]}), flush=True)
        return 1
    out = side.summary()
    print(json.dumps(out), flush=True)
    ok = {"IBV_WC_SUCCESS", args.flush_status}
    bad = [s for s in side.statuses if s not in ok]
    if args.expect_status:
        return 0 if not side.errors and out.get("first_error") else 1
    if side.errors or bad:
        sys.stderr.write(f"wire_ops {args.role}: {len(side.errors)} error(s); completions "
                         f"{dict(side.statuses)}\n" +
                         "".join(f"  {x}\n" for x in side.errors[:MAX_ERRORS]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
