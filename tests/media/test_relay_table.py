"""RelayTable (``media/relay_table.py``) against the production Python relay path.

The reference is :meth:`RelayGate.on_datagram` (``queue_send=None``), which calls
``ReceiveStats.update_fields`` (RFC 3550 A.1 sequence validation, A.8 jitter) and rewrites
the header into the peer's space.  Two copies of the same gates are kept: one fed packet by
packet to ``RelayGate.on_datagram``, one put in a :class:`RelayTable` and fed through
:meth:`RelayTable.relay` a batch at a time.  A packet the table does not take is handled as
production does (``ring_io.DatagramBatch.receive``): the gate leaves the table (its state
written back), the Python path handles the packet, and the gate is put back.  After every
batch the datagrams sent, the general path's calls and every piece of state must be the same,
the jitter estimate bit for bit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trunkline.media.receive_stats import ReceiveStats
from trunkline.media.relay_table import DEST_PTR, DEST_SIZE, OUT_FD, RelayTable
from trunkline.media.ring_io import source_key
from trunkline.media.stream import StreamStats
from trunkline.media.stream_send import HEADER, RelayGate

ROW = 512  # octets per receive row here (the table does not care about ROW's value)
SOURCE = ("127.0.0.1", 40000)
OTHER_SOURCE = ("127.0.0.1", 40002)
CLOCK = 8000


class FakeSock:
    """The peer's socket: records what the Python path sends (``sendto`` always succeeds)."""

    def __init__(self, log: list[tuple[int, bytes, tuple[str, int]]], index: int) -> None:
        self.log = log
        self.index = index

    def sendto(self, data: Any, addr: tuple[str, int]) -> int:
        self.log.append((self.index, bytes(data), addr))
        return len(data)


class Peer:
    """What a gate reads and writes of the peer stream."""

    def __init__(self, fwd_max_seq: int, seq: int, ts: int) -> None:
        self._fwd_max_seq = fwd_max_seq
        self.seq = seq
        self.ts = ts
        self._sent_since_report = False


@dataclass
class Spec:
    """One relayed direction's starting state."""

    ssrc: int
    first_seq: int
    first_ts: int
    primed: int  # packets already seen by the stats (2: steady; 0-1: still on probation)
    jitter: float
    seq_offset: int
    ts_offset: int
    frame_bytes: int  # 0: any size
    out_ssrc: int
    payload_type: int = 0
    out_payload_type: int = 0
    fresh_transit: bool = False  # steady, but no previous transit (``restart_transit``)


@dataclass
class World:
    """Gates built from specs; ``sent``: (gate index, datagram, destination); ``general``: the
    datagrams handed to the general path (gate index, octets, address, now)."""

    specs: list[Spec]
    buffer: bytearray
    gates: list[RelayGate] = field(default_factory=list)
    sent: list[tuple[int, bytes, tuple[str, int]]] = field(default_factory=list)
    general: list[tuple[int, bytes, tuple[str, int], float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for index, spec in enumerate(self.specs):
            self.gates.append(self._gate(index, spec))

    def _gate(self, index: int, spec: Spec) -> RelayGate:
        stats = ReceiveStats(spec.ssrc, CLOCK)
        for k in range(spec.primed):
            seq = (spec.first_seq - spec.primed + k) & 0xFFFF
            stats.update_fields(
                seq, (spec.first_ts - 160 * (spec.primed - k)) & 0xFFFFFFFF, 160, 100.0 + 0.02 * k
            )
        stats._jitter = spec.jitter if spec.primed else 0.0
        if spec.fresh_transit:
            stats.restart_transit()
        in_counters, out_counters = StreamStats(), StreamStats()
        in_counters.packets_received = 5 + index
        out_counters.packets_sent, out_counters.octets_sent, out_counters.packets_relayed = 7, 1120, 3
        seq0 = (spec.first_seq - 1) & 0xFFFF
        peer = Peer(
            seq0, (seq0 + spec.seq_offset + 1) & 0xFFFF, (spec.first_ts + spec.ts_offset) & 0xFFFFFFFF
        )
        buffer = self.buffer
        log = self.general

        def general(offset: int, n: int, addr: tuple[str, int], now: float) -> None:
            log.append((index, bytes(buffer[offset : offset + n]), addr, now))

        target = SimpleNamespace(fd=900 + index, ptr=0x10000 + 64 * index, size=16)
        return RelayGate(
            leg=cast(Any, None),
            buffer=buffer,
            view=memoryview(buffer),
            general=general,
            queue_send=None,
            payload_type=spec.payload_type,
            ssrc=spec.ssrc,
            source=SOURCE,
            frame_bytes=spec.frame_bytes,
            stats=stats,
            in_counters=cast(Any, in_counters),
            peer=cast(Any, peer),
            out_sock=cast(Any, FakeSock(self.sent, index)),
            out_remote=("127.0.0.1", 50000 + 2 * index),
            out_target=cast(Any, target),
            out_payload_type=spec.out_payload_type,
            out_ssrc=spec.out_ssrc,
            seq_offset=spec.seq_offset,
            ts_offset=spec.ts_offset,
            ts_step=160,
            out_counters=cast(Any, out_counters),
        )


def state_of(gate: RelayGate) -> dict[str, Any]:
    """Everything of a gate's objects the relay may change (floats as their exact bits)."""
    s, peer = gate.stats, cast(Peer, gate.peer)
    out, inc = gate.out_counters, gate.in_counters
    return {
        "max_seq": s.max_seq,
        "cycles": s.cycles,
        "received": s.received,
        "octets": s.octets,
        "base_seq": s.base_seq,
        "bad_seq": s.bad_seq,
        "probation": s.probation,
        "jitter": s._jitter.hex(),
        "transit": None if s._transit is None else s._transit.hex(),
        "packets_received": inc.packets_received,
        "packets_sent": out.packets_sent,
        "octets_sent": out.octets_sent,
        "packets_relayed": out.packets_relayed,
        "send_drops": out.send_drops,
        "fwd_max_seq": peer._fwd_max_seq,
        "peer_seq": peer.seq,
        "peer_ts": peer.ts,
        "sent_since_report": peer._sent_since_report,
    }


@dataclass
class Packet:
    gate: int  # which gate's socket it arrives on (-1: a socket without a gate)
    data: bytes
    n: int
    addr: tuple[str, int]


def _first(item: tuple[Any, ...]) -> int:
    index: int = item[0]
    return index


class Harness:
    """The reference world and the table world, fed the same batches."""

    FDS = (5, 1500, 12)  # 1500: beyond the table's initial fd index (reserve() grows it)
    UNGATED = (7, 8)

    def __init__(self, specs: list[Spec], capacity: int = 2) -> None:
        self.rows = 8
        self.ref = World(specs, bytearray(ROW))
        self.tab_buffer = bytearray(self.rows * ROW)
        self.tab = World(specs, self.tab_buffer)
        self.packets = np.frombuffer(self.tab_buffer, np.uint8).reshape(self.rows, ROW)
        self.table = RelayTable(capacity)
        for fd in self.UNGATED:
            self.table.reserve(fd)
        self.key = source_key(SOURCE)
        assert self.key is not None
        for k, gate in enumerate(self.tab.gates):
            self.table.add(self.FDS[k], gate, self.key)
        self.ungated: list[tuple[bytes, tuple[str, int]]] = []
        self.taken = 0

    def step(self, batch: list[Packet], now: float) -> None:
        # Reference: one packet at a time through the production Python path.
        for p in batch:
            if p.gate < 0:
                continue
            self.ref.buffer[: len(p.data)] = p.data
            self.ref.gates[p.gate].on_datagram(0, p.n, p.addr, now)
        # Table world: the batch in rows 0.., relayed at once, then the general path for the rest.
        for row, p in enumerate(batch):
            self.packets[row, : len(p.data)] = np.frombuffer(p.data, np.uint8)
        rows = np.arange(len(batch), dtype=np.int64)
        fds = np.array([self.FDS[p.gate] if p.gate >= 0 else self.UNGATED[0] for p in batch], np.int64)
        sizes = np.array([p.n for p in batch], np.int64)
        keys = np.array([source_key(p.addr) for p in batch], np.uint64)
        fast, gate_rows = self.table.relay(self.packets, rows, fds, sizes, keys, now)
        assert fast.dtype == np.bool_ and fast.shape == (len(batch),)
        for i, p in enumerate(batch):
            if p.gate < 0:
                assert not fast[i] and gate_rows[i] == -1
                assert self.packets[i, : len(p.data)].tobytes() == p.data  # untouched
                self.ungated.append((p.data, p.addr))
                continue
            row = int(gate_rows[i])
            assert row == int(self.table.gate_of_fd[self.FDS[p.gate]]) and row >= 0
            gate = self.tab.gates[p.gate]
            assert self.table.gates[row] is gate
            if fast[i]:
                self.taken += 1
                ints = self.table.ints[row]
                assert (ints[OUT_FD], ints[DEST_PTR], ints[DEST_SIZE]) == (
                    900 + p.gate,
                    0x10000 + 64 * p.gate,
                    16,
                )
                self.tab.sent.append((p.gate, self.packets[i, : p.n].tobytes(), gate.out_remote))
        for i, p in enumerate(batch):
            if p.gate < 0 or fast[i]:
                continue
            assert self.packets[i, : len(p.data)].tobytes() == p.data  # a packet not taken is not touched
            fd = self.FDS[p.gate]
            self.table.remove(fd)
            assert self.table.gate_of_fd[fd] == -1
            self.tab.gates[p.gate].on_datagram(i * ROW, p.n, p.addr, now)
            self.table.add(fd, self.tab.gates[p.gate], cast(int, self.key))

    def compare(self, sync: bool = True) -> None:
        """Compare what was sent and handed on; with ``sync``, the gates' state too (written back first)."""
        # Per gate in arrival order (the table sends a batch's relayed packets before the
        # general path runs for the others: the order across gates differs, as in production).
        assert sorted(self.tab.sent, key=_first) == sorted(self.ref.sent, key=_first)
        assert sorted(self.tab.general, key=_first) == sorted(self.ref.general, key=_first)
        if not sync:
            return  # the table's columns are the truth until written back
        for k in range(len(self.tab.gates)):
            self.table.sync(int(self.table.gate_of_fd[self.FDS[k]]))
        for k, (a, b) in enumerate(zip(self.ref.gates, self.tab.gates, strict=True)):
            assert state_of(b) == state_of(a), f"gate {k}"

    def report(self) -> None:
        """An RTCP report: the stream syncs its gates and clears the sender flag."""
        self.compare()
        for world in (self.ref, self.tab):
            for gate in world.gates:
                cast(Peer, gate.peer)._sent_since_report = False


# -- strategies -------------------------------------------------------------------------------

_SEQ_BOUNDARIES = [0, 1, 2, -1, -99, -100, -101, 2999, 3000, 3001, 65436, 65437, 32768, -32768]
seq_steps = st.one_of(
    *[st.just(1)] * 4,
    st.integers(-120, 120),
    st.sampled_from(_SEQ_BOUNDARIES),
    st.integers(0, 65535),
)
ts_noise = st.one_of(st.just(0), st.integers(-400, 400), st.integers(0, 0xFFFFFFFF))
flaws = st.sampled_from(["none"] * 27 + ["ssrc", "pt", "size", "short", "source", "pad", "ext", "cc", "v1"])


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    return Spec(
        ssrc=draw(st.integers(0, 0xFFFFFFFF)),
        first_seq=draw(st.one_of(st.integers(65500, 65535), st.integers(0, 65535))),
        first_ts=draw(st.one_of(st.integers(0xFFFFF000, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF))),
        primed=draw(st.sampled_from([2, 2, 2, 0, 1])),
        jitter=draw(st.floats(0, 2000, allow_nan=False)),
        seq_offset=draw(st.integers(0, 0xFFFF)),
        ts_offset=draw(st.integers(0, 0xFFFFFFFF)),
        frame_bytes=draw(st.sampled_from([160, 0])),
        out_ssrc=draw(st.integers(0, 0xFFFFFFFF)),
        out_payload_type=draw(st.sampled_from([0, 0, 96])),
        fresh_transit=draw(st.booleans()),
    )


@dataclass
class Cursor:
    seq: int
    ts: int


def make_packet(spec: Spec, cursor: Cursor, gate: int, step: int, noise: int, flaw: str, marker: bool,
                size: int) -> Packet:  # fmt: skip
    cursor.seq = (cursor.seq + step) & 0xFFFF
    cursor.ts = (cursor.ts + 160 * step + noise) & 0xFFFFFFFF
    first, pt, ssrc, addr = 0x80, spec.payload_type, spec.ssrc, SOURCE
    payload = size if spec.frame_bytes == 0 else spec.frame_bytes
    if flaw == "ssrc":
        ssrc ^= 1 << (step & 31)
    elif flaw == "pt":
        pt = 8 if pt != 8 else 0
    elif flaw == "size":
        payload = (80, 159, 161, 320)[step & 3] if spec.frame_bytes else payload
    elif flaw == "source":
        addr = OTHER_SOURCE
    elif flaw in ("pad", "ext", "cc", "v1"):
        first = {"pad": 0xA0, "ext": 0x90, "cc": 0x81, "v1": 0x40}[flaw]
    data = bytearray(HEADER.pack(first, (0x80 if marker else 0) | pt, cursor.seq, cursor.ts, ssrc))
    data += bytes((cursor.seq + i) & 0xFF for i in range(payload))
    n = len(data)
    if flaw == "short":
        n = size % 13  # 0..12 octets: not an RTP packet the gate takes
    return Packet(gate, bytes(data), n, addr)


packet_draws = st.tuples(
    st.integers(0, 2), seq_steps, ts_noise, flaws, st.booleans(), st.integers(1, 200), st.integers(0, 3)
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gate_specs=st.lists(specs(), min_size=1, max_size=3),
    batches=st.lists(
        st.tuples(st.lists(packet_draws, min_size=1, max_size=4), st.floats(0.0, 0.25), st.booleans()),
        min_size=1,
        max_size=40,
    ),
)
def test_table_relays_exactly_as_the_python_path(
    gate_specs: list[Spec], batches: list[tuple[list[tuple[int, int, int, str, bool, int, int]], float, bool]]
) -> None:
    h = Harness(gate_specs)
    cursors = [Cursor(s.first_seq - 1, (s.first_ts - 160) & 0xFFFFFFFF) for s in gate_specs]
    now = 100.5
    for draws, advance, report in batches:
        now += advance
        batch: list[Packet] = []
        used: set[int] = set()
        for gate, step, noise, flaw, marker, size, ungated in draws:
            gate %= len(gate_specs)
            if ungated == 0 and -1 not in used:
                used.add(-1)  # one datagram from a socket without a gate
                batch.append(Packet(-1, HEADER.pack(0x80, 0, step & 0xFFFF, 0, 1) + b"x", 13, SOURCE))
            if gate in used:  # each socket at most once per batch
                continue
            used.add(gate)
            batch.append(make_packet(gate_specs[gate], cursors[gate], gate, step, noise, flaw, marker, size))
        h.step(batch, now)
        if report:
            h.report()
        else:
            h.compare()
    assert len(h.ungated) == sum(1 for draws, _, _ in batches if any(d[6] == 0 for d in draws))


def _steady_spec(**changes: Any) -> Spec:
    base = Spec(ssrc=0x1234, first_seq=65530, first_ts=0xFFFFFF00, primed=2, jitter=3.0, seq_offset=1000,
                ts_offset=5, frame_bytes=160, out_ssrc=0xBEEF)  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_a_steady_stream_is_all_taken_across_both_wraps() -> None:
    """The table takes every packet of a steady stream (it is the fast path, not a detour),
    through a sequence wrap and a timestamp wrap, and the results match."""
    specs_ = [_steady_spec(), _steady_spec(ssrc=0x99, first_seq=10, frame_bytes=0)]
    h = Harness(specs_)
    cursors = [Cursor(s.first_seq - 1, (s.first_ts - 160) & 0xFFFFFFFF) for s in specs_]
    now = 100.5
    for k in range(30):
        now += 0.02 + (0.003 if k % 3 == 0 else 0.0)
        batch = [make_packet(specs_[g], cursors[g], g, 1, 0, "none", k == 0, 160) for g in (0, 1)]
        h.step(batch, now)
        h.compare(sync=k % 7 == 0)
    h.compare()
    assert h.taken == 60
    stats = h.tab.gates[0].stats
    assert stats.cycles == 1 << 16 and stats.max_seq == (65530 + 29) & 0xFFFF
    assert stats.received == 1 + 30 and stats.octets == 160 * 31
    assert stats._jitter != 3.0  # the arrival-time noise moved it
    first = h.tab.sent[0][1]
    assert first[1] == 0x80 and int.from_bytes(first[2:4], "big") == (65530 + 1000) & 0xFFFF
    assert int.from_bytes(first[4:8], "big") == (0xFFFFFF00 + 5) & 0xFFFFFFFF
    assert int.from_bytes(first[8:12], "big") == 0xBEEF


def test_what_the_table_refuses() -> None:
    """Probation, a very large jump, and each header/size/source mismatch go to the general path."""
    cases = {
        "jump": (3000, "none"),
        "back": (-100, "none"),
        "ssrc": (1, "ssrc"),
        "pt": (1, "pt"),
        "size": (1, "size"),
        "short": (1, "short"),
        "source": (1, "source"),
        "pad": (1, "pad"),
        "ext": (1, "ext"),
        "cc": (1, "cc"),
    }
    for name, (step, flaw) in cases.items():
        spec = _steady_spec()
        h = Harness([spec])
        cursor = Cursor(spec.first_seq - 1, (spec.first_ts - 160) & 0xFFFFFFFF)
        h.step([make_packet(spec, cursor, 0, 1, 0, "none", False, 160)], 100.5)
        h.step([make_packet(spec, cursor, 0, step, 0, flaw, False, 171)], 100.52)
        h.compare()
        assert h.taken == 1, name
    # Any size goes where the packet time does not show in it, but a header alone is not RTP.
    for size in (12, 13, 25):  # n = size % 13: 12, 0, 12 octets
        spec = _steady_spec(frame_bytes=0)
        h = Harness([spec])
        cursor = Cursor(spec.first_seq - 1, (spec.first_ts - 160) & 0xFFFFFFFF)
        h.step([make_packet(spec, cursor, 0, 1, 0, "none", False, 1)], 100.5)  # one octet: taken
        h.step([make_packet(spec, cursor, 0, 1, 0, "short", False, size)], 100.52)
        h.compare()
        assert h.taken == 1, size
        assert h.tab.general[-1][1] == h.ref.general[-1][1] and len(h.tab.general[-1][1]) == size % 13
    # Limits that are still taken: a gap of 2999, a packet 99 behind (RFC 3550 A.1).
    for step in (2999, -99):
        spec = _steady_spec()
        h = Harness([spec])
        cursor = Cursor(spec.first_seq - 1, (spec.first_ts - 160) & 0xFFFFFFFF)
        h.step([make_packet(spec, cursor, 0, 1, 0, "none", False, 160)], 100.5)
        h.step([make_packet(spec, cursor, 0, step, 0, "none", False, 160)], 100.52)
        h.compare()
        assert h.taken == 2, step
    spec = _steady_spec(primed=1)
    h = Harness([spec])
    cursor = Cursor(spec.first_seq - 1, (spec.first_ts - 160) & 0xFFFFFFFF)
    h.step([make_packet(spec, cursor, 0, 1, 0, "none", False, 160)], 100.5)  # on probation: general
    h.step([make_packet(spec, cursor, 0, 1, 0, "none", False, 160)], 100.52)  # valid now: taken
    h.compare()
    assert h.taken == 1


def test_send_failed_undoes_the_count() -> None:
    spec = _steady_spec()
    h = Harness([spec])
    cursor = Cursor(spec.first_seq - 1, (spec.first_ts - 160) & 0xFFFFFFFF)
    h.step([make_packet(spec, cursor, 0, 1, 0, "none", False, 160)], 100.5)
    gate = h.tab.gates[0]
    row = int(h.table.gate_of_fd[h.FDS[0]])
    h.table.send_failed(row, gate, 172)
    h.table.sync(row)
    ref = h.ref.gates[0]
    ref.send_failed(172)
    got, want = state_of(gate), state_of(ref)
    # Nothing left: the peer did not send (as the one-sendto-per-packet path, which sets the
    # flag only after a successful send; the Python gate's queued send sets it before).
    assert got.pop("sent_since_report") is False and want.pop("sent_since_report") is True
    assert got == want
    assert gate.out_counters.send_drops == 1 and gate.out_counters.packets_sent == 7
    # A row that now holds another gate: the failure is counted on the gate's own objects.
    h.table.remove(h.FDS[0])
    h.table.send_failed(row, gate, 172)
    assert gate.out_counters.send_drops == 2 and gate.out_counters.packets_relayed == 3 - 1


def _specs(count: int) -> list[Spec]:
    return [_steady_spec(ssrc=100 + k, first_seq=(k * 977) & 0xFFFF) for k in range(count)]


def test_sync_all_writes_every_row_once_over_its_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(_specs(11), bytearray(ROW))
    table = RelayTable(capacity=4)  # grows twice
    key = cast(int, source_key(SOURCE))
    for k, gate in enumerate(world.gates):
        table.add(20 + k, gate, key)
    table.remove(22)  # a hole: its row is skipped
    table.remove(27)
    written: list[int] = []
    original = RelayTable._write_back

    def counting(gate: RelayGate, i: list[int], f: list[float]) -> None:
        written.append(world.gates.index(gate))
        original(gate, i, f)

    monkeypatch.setattr(RelayTable, "_write_back", staticmethod(counting))
    for parts in (1, 3, 4, 50):
        written.clear()
        for part in range(parts):
            table.sync_all(part, parts)
        assert sorted(written) == [k for k in range(11) if k not in (2, 7)], parts
    # What is written is the row's state: change a row's columns, sync its part, read it back.
    row = int(table.gate_of_fd[25])
    table.ints[row, 6] += 3  # MAX_SEQ
    table.floats[row, 1] = 42.5  # JITTER
    for part in range(3):
        if row % 3 == part:
            table.sync_all(part, 3)
    assert world.gates[5].stats.max_seq == 5 * 977 - 1 + 3  # primed up to first_seq - 1
    assert world.gates[5].stats._jitter == 42.5


def test_remove_writes_back_and_frees_the_row() -> None:
    world = World(_specs(3), bytearray(ROW))
    table = RelayTable(capacity=2)
    key = cast(int, source_key(SOURCE))
    rows = [table.add(30 + k, g, key) for k, g in enumerate(world.gates)]
    assert len(set(rows)) == 3 and len(table) == 3 and table.capacity == 4
    table.ints[rows[1], 8] += 10  # RECEIVED
    table.remove(31)
    table.remove(31)  # unknown now: ignored
    table.remove(5000)  # beyond the index: ignored
    assert world.gates[1].stats.received == 1 + 10
    assert len(table) == 2 and table.gates[rows[1]] is None and table.gate_of_fd[31] == -1
    again = table.add(31, world.gates[1], key)
    assert again == rows[1]  # the freed row is reused
    # add() on a socket that has a gate replaces it (the old one written back first).
    table.ints[again, 8] += 1
    table.add(31, world.gates[2], key)
    assert world.gates[1].stats.received == 1 + 11
    assert len(table) == 3
