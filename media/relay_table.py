"""Open relay gates as numpy columns: a whole batch of relayed packets handled in a few array operations.

With batched I/O (:mod:`trunkline.media.ring_io`) the system calls of a relayed packet are
shared by a batch; what is left per packet is the relay's own work: check that the packet is
the next one of the gate's source (RFC 3550 section 5.1 header, payload type, SSRC, source
address, size), update the receive statistics (A.1's sequence validation for a valid source,
A.8's interarrival jitter), map sequence number, timestamp and SSRC into the peer's space and
count the packet.  :class:`RelayTable` keeps every open :class:`~trunkline.media.stream_send.RelayGate`'s
state in one row of a set of numpy columns and does that work for all the packets of a batch
at once (:meth:`RelayTable.relay`); each column operation replaces a Python statement per
packet.

While a gate is in the table its columns are the truth: :meth:`RelayTable.remove` and
:meth:`RelayTable.sync` write them back into the streams' objects (``ReceiveStats``,
``StreamStats``, the peer's sequence state), which the engine does when a gate closes, once a
second for every open gate, and before a stream's RTCP report.  A packet that is not the
steady state's (another source, payload type or size, a very large sequence jump, a source
still on probation) is not touched here: its gate is closed and the packet takes the general
path, which reopens a gate when the steady state holds again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from trunkline.media.receive_stats import MAX_DROPOUT, MAX_MISORDER, RTP_SEQ_MOD

if TYPE_CHECKING:
    from trunkline.media.stream_send import RelayGate

__all__ = ["RelayTable"]

_I64 = np.int64
_WRAP32 = 4294967296.0
_HALF32 = 2147483648.0

#: The integer columns (one row per gate): the packet a gate expects, its state and counters.
#: ``sig`` is the first header word a packet must have (V=2, no P/X/CC, the payload type; the
#: marker bit masked out), -1 while the source is on probation; ``min_n``/``max_n`` the datagram
#: sizes it accepts (one size where the packet time shows in it).  The four packet counters and
#: the two octet counters are side by side, so one slice updates each group.
INT_COLUMNS = (
    "fd", "sig", "ssrc", "source", "min_n", "max_n", "max_seq", "cycles",
    "received", "in_packets", "sent", "relayed",
    "octets", "sent_octets",
    "fwd_max_seq", "peer_seq", "peer_ts", "ts_step", "seq_offset", "ts_offset", "out_sig", "out_ssrc",
    "out_fd", "dest_ptr", "dest_size", "drops", "has_transit",
)  # fmt: skip
FLOAT_COLUMNS = ("transit", "jitter", "clock_rate")
(
    FD, SIG, SSRC, SOURCE, MIN_N, MAX_N, MAX_SEQ, CYCLES, RECEIVED, IN_PACKETS, SENT, RELAYED, OCTETS,
    SENT_OCTETS, FWD_MAX_SEQ, PEER_SEQ, PEER_TS, TS_STEP, SEQ_OFFSET, TS_OFFSET, OUT_SIG, OUT_SSRC,
    OUT_FD, DEST_PTR, DEST_SIZE, DROPS, HAS_TRANSIT,
) = range(len(INT_COLUMNS))  # fmt: skip
TRANSIT, JITTER, CLOCK = range(len(FLOAT_COLUMNS))
_SIG_MASK = 0xFF7F0000  # first word: V/P/X/CC and the payload type, not the marker or sequence number


class RelayTable:
    """The open relay gates of one poller, one row each; ``gate_of_fd[fd]`` is a socket's row or -1."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        #: ``ints[row, column]`` for the columns of :data:`INT_COLUMNS`, ``floats`` for :data:`FLOAT_COLUMNS`.
        self.ints: npt.NDArray[np.int64] = np.zeros((capacity, len(INT_COLUMNS)), _I64)
        self.floats: npt.NDArray[np.float64] = np.zeros((capacity, len(FLOAT_COLUMNS)), np.float64)
        self.gates: list[RelayGate | None] = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self.gate_of_fd: npt.NDArray[np.int64] = np.full(1024, -1, _I64)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def _grow(self) -> None:
        old = self.capacity
        self.capacity = new = 2 * old
        ints = np.zeros((new, len(INT_COLUMNS)), _I64)
        ints[:old] = self.ints
        floats = np.zeros((new, len(FLOAT_COLUMNS)), np.float64)
        floats[:old] = self.floats
        self.ints, self.floats = ints, floats
        self.gates.extend([None] * old)
        self._free.extend(range(new - 1, old - 1, -1))

    def reserve(self, fd: int) -> None:
        """Make room in :attr:`gate_of_fd` for socket ``fd`` (every socket :meth:`relay` may see)."""
        if fd >= len(self.gate_of_fd):
            grown = np.full(max(2 * len(self.gate_of_fd), fd + 1), -1, _I64)
            grown[: len(self.gate_of_fd)] = self.gate_of_fd
            self.gate_of_fd = grown

    def add(self, fd: int, gate: RelayGate, source_key: int) -> int:
        """Put ``gate`` (the gate of the socket ``fd``) in the table; its state is read from its objects.

        ``source_key`` is the first 8 octets of the source's ``sockaddr_in`` as the batch
        reads them (family, port, address), the form the source is compared in.
        """
        self.reserve(fd)
        if self.gate_of_fd[fd] >= 0:
            self.remove(fd)
        if not self._free:
            self._grow()
        row = self._free.pop()
        self.gates[row] = gate
        self.gate_of_fd[fd] = row
        self.count += 1
        stats, peer, target = gate.stats, gate.peer, gate.out_target
        if source_key >= 1 << 63:
            source_key -= 1 << 64  # the column is signed
        ints = {
            "fd": fd,
            "sig": (0x80000000 | gate.payload_type << 16) if stats.steady() else -1,
            "ssrc": gate.ssrc,
            "source": source_key,
            "min_n": gate.frame_bytes + 12 if gate.frame_bytes else 13,
            "max_n": gate.frame_bytes + 12 if gate.frame_bytes else 1 << 30,
            "max_seq": stats.max_seq,
            "received": stats.received,
            "octets": stats.octets,
            "in_packets": gate.in_counters.packets_received,
            "fwd_max_seq": peer._fwd_max_seq,
            "peer_seq": peer.seq,
            "peer_ts": peer.ts,
            "ts_step": gate.ts_step,
            "seq_offset": gate.seq_offset,
            "ts_offset": gate.ts_offset,
            "out_sig": 0x80000000 | gate.out_payload_type << 16,
            "out_ssrc": gate.out_ssrc,
            "out_fd": target.fd,
            "dest_ptr": target.ptr,
            "dest_size": target.size,
            "sent": gate.out_counters.packets_sent,
            "sent_octets": gate.out_counters.octets_sent,
            "relayed": gate.out_counters.packets_relayed,
            "drops": gate.out_counters.send_drops,
            "has_transit": int(stats._transit is not None),
            "cycles": stats.cycles,
        }
        self.ints[row] = [ints[name] for name in INT_COLUMNS]
        self.floats[row] = [stats._transit or 0.0, stats._jitter, float(stats.clock_rate)]
        return row

    def remove(self, fd: int) -> None:
        """Take the gate of socket ``fd`` out (its state written back first); unknown sockets are ignored."""
        if not 0 <= fd < len(self.gate_of_fd):  # (-1: a closed socket's fileno())
            return
        row = int(self.gate_of_fd[fd])
        if row < 0:
            return
        self.sync(row)
        self.gate_of_fd[fd] = -1
        self.gates[row] = None
        self.ints[row, FD] = -1
        self._free.append(row)
        self.count -= 1

    def sync(self, row: int) -> None:
        """Write row ``row``'s state into its gate's objects (the gate stays in the table)."""
        gate = self.gates[row]
        if gate is None:
            return
        self._write_back(gate, self.ints[row].tolist(), self.floats[row].tolist())

    @staticmethod
    def _write_back(gate: RelayGate, i: list[int], f: list[float]) -> None:
        stats, peer, out = gate.stats, gate.peer, gate.out_counters
        stats.max_seq = i[MAX_SEQ]
        stats.cycles = i[CYCLES]
        stats.received = i[RECEIVED]
        stats.octets = i[OCTETS]
        stats._transit = f[TRANSIT] if i[HAS_TRANSIT] else None
        stats._jitter = f[JITTER]
        gate.in_counters.packets_received = i[IN_PACKETS]
        peer._fwd_max_seq = i[FWD_MAX_SEQ]
        peer.seq = i[PEER_SEQ]
        peer.ts = i[PEER_TS]
        if i[SENT] != out.packets_sent:
            peer._sent_since_report = True
        out.packets_sent = i[SENT]
        out.octets_sent = i[SENT_OCTETS]
        out.packets_relayed = i[RELAYED]
        out.send_drops = i[DROPS]

    def sync_all(self, part: int = 0, parts: int = 1) -> None:
        """:meth:`sync` every gate in the table (or the rows ``part``, ``part + parts``, ...)."""
        rows = range(part, self.capacity, parts)
        ints = self.ints[part::parts].tolist()
        floats = self.floats[part::parts].tolist()
        gates = self.gates
        for row, i, f in zip(rows, ints, floats, strict=True):
            gate = gates[row]
            if gate is not None:
                self._write_back(gate, i, f)

    def relay(
        self,
        packets: npt.NDArray[np.uint8],
        rows: npt.NDArray[np.int64],
        fds: npt.NDArray[np.int64],
        sizes: npt.NDArray[np.int64],
        source_keys: npt.NDArray[np.uint64],
        now: float,
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
        """Relay the datagrams that are their gate's next packet; say which.

        ``packets`` is the receive buffer as ``(rows, ROW)`` octets; datagram ``i`` is in row
        ``rows[i]``, ``sizes[i]`` octets read from socket ``fds[i]`` (each socket at most once)
        whose source was ``source_keys[i]``.  For those that are their gate's next packet the
        header is rewritten in place and the gate's columns updated.  Returns a mask over the
        datagrams (True: relayed; send it to its gate's peer) and every datagram's gate row
        (-1: the socket has no open gate).
        """
        gate = self.gate_of_fd[fds]
        gated = gate >= 0
        fast = np.zeros(len(fds), dtype=np.bool_)
        count = np.count_nonzero(gated)  # (count_nonzero is cheaper than any()/all() on small arrays)
        if not count:
            return fast, gate
        if count == len(fds):
            idx: npt.NDArray[np.int64] | None = None
            g, r, n, keys = gate, rows, sizes, source_keys
        else:
            idx = np.flatnonzero(gated)
            g, r, n, keys = gate[idx], rows[idx], sizes[idx], source_keys[idx]
        ints = self.ints
        words = packets[r, :12].view(">u4").astype(_I64)  # (K, 3): V..PT|seq, timestamp, SSRC
        state = ints[g]
        seq = words[:, 0] & 0xFFFF
        # RFC 3550 A.1 update_seq for a valid source: in order with a permissible gap (a
        # wrap adds a cycle), or a duplicate/reordered packet.  A very large jump (a restart
        # without telling us) and a source on probation take the general path.
        udelta = (seq - state[:, MAX_SEQ]) & 0xFFFF
        in_order = udelta < MAX_DROPOUT
        ok = (words[:, 0] & _SIG_MASK) == state[:, SIG]
        ok &= words[:, 2] == state[:, SSRC]
        ok &= keys.view(_I64) == state[:, SOURCE]
        ok &= (n >= state[:, MIN_N]) & (n <= state[:, MAX_N])
        ok &= in_order | (udelta > RTP_SEQ_MOD - MAX_MISORDER)
        count = np.count_nonzero(ok)
        if count < len(ok):
            if not count:
                return fast, gate
            sel = np.flatnonzero(ok)
            g, r, n, words, state = g[sel], r[sel], n[sel], words[sel], state[sel]
            seq, in_order = seq[sel], in_order[sel]
            idx = sel if idx is None else idx[sel]
        if idx is None:
            fast[:] = True
        else:
            fast[idx] = True
        ts = words[:, 1]
        size = n - 12
        # A.1 (as above) and A.8 (interarrival jitter), as ReceiveStats.update_fields.
        max_seq = state[:, MAX_SEQ]
        if np.count_nonzero(in_order) == len(seq):
            wrapped = seq < max_seq
            if np.count_nonzero(wrapped):
                state[:, CYCLES] += wrapped.astype(_I64) << 16
            state[:, MAX_SEQ] = seq
        else:
            state[:, CYCLES] += (in_order & (seq < max_seq)).astype(_I64) << 16
            state[:, MAX_SEQ] = np.where(in_order, seq, max_seq)
        state[:, RECEIVED : RELAYED + 1] += 1
        state[:, OCTETS : SENT_OCTETS + 1] += size[:, None]
        floats = self.floats[g]
        transit = now * floats[:, CLOCK] - ts
        d = transit - floats[:, TRANSIT]
        magnitude = np.abs(d)
        if np.count_nonzero(magnitude > _HALF32):  # timestamps wrapped at 2^32: the nearest representation
            d += _WRAP32 * ((d < -_HALF32).astype(np.float64) - (d > _HALF32))
            magnitude = np.abs(d)
        jitter = floats[:, JITTER]
        if np.count_nonzero(state[:, HAS_TRANSIT]) == len(d):
            floats[:, JITTER] = jitter + (magnitude - jitter) / 16.0
        else:
            smoothed = jitter + (magnitude - jitter) / 16.0
            floats[:, JITTER] = np.where(state[:, HAS_TRANSIT] != 0, smoothed, jitter)
        floats[:, TRANSIT] = transit
        state[:, HAS_TRANSIT] = 1
        self.floats[g] = floats
        # Into the peer's sequence/timestamp space (RtpSending.relay_into).
        out_seq = (seq + state[:, SEQ_OFFSET]) & 0xFFFF
        out_ts = (ts + state[:, TS_OFFSET]) & 0xFFFFFFFF
        step = (seq - state[:, FWD_MAX_SEQ]) & 0xFFFF
        ahead = (step > 0) & (step < 0x8000)
        if np.count_nonzero(ahead) == len(ahead):
            state[:, FWD_MAX_SEQ] = seq
            state[:, PEER_SEQ] = (out_seq + 1) & 0xFFFF
            state[:, PEER_TS] = (out_ts + state[:, TS_STEP]) & 0xFFFFFFFF
        else:
            state[:, FWD_MAX_SEQ] = np.where(ahead, seq, state[:, FWD_MAX_SEQ])
            state[:, PEER_SEQ] = np.where(ahead, (out_seq + 1) & 0xFFFF, state[:, PEER_SEQ])
            state[:, PEER_TS] = np.where(ahead, (out_ts + state[:, TS_STEP]) & 0xFFFFFFFF, state[:, PEER_TS])
        ints[g] = state
        header = np.empty((len(r), 3), ">u4")
        header[:, 0] = (words[:, 0] & 0x00800000) | state[:, OUT_SIG] | out_seq
        header[:, 1] = out_ts
        header[:, 2] = state[:, OUT_SSRC]
        packets[r, :12] = header.view(np.uint8)
        return fast, gate

    def send_failed(self, row: int, gate: RelayGate, n: int) -> None:
        """A relayed packet of ``gate`` (table row ``row`` when it was sent) was dropped: count it."""
        if self.gates[row] is gate:
            ints = self.ints
            ints[row, SENT] -= 1
            ints[row, SENT_OCTETS] -= n - 12
            ints[row, RELAYED] -= 1
            ints[row, DROPS] += 1
        else:
            gate.send_failed(n)
