"""Many datagram sockets behind one event-loop reader (DESIGN.md section 5, the receive path).

A gateway with a thousand calls has two thousand RTP sockets, each receiving 50 packets a
second.  Registering every socket with the event loop costs one loop wake-up, one callback
and one ``BlockingIOError`` (the "drained" signal) per packet.  :class:`DatagramPoller` keeps
the sockets in its own level-triggered ``epoll`` set instead and registers only that set's
descriptor with the event loop.  When any socket is readable the loop calls
:meth:`DatagramPoller._on_ready`, which asks the kernel for every ready socket at once
(``epoll_wait`` with a zero timeout, up to :attr:`max_events` per call) and calls each
socket's handler with the loop time of the wake-up; the handler reads **one** datagram.
A socket with more queued is reported again by the next ``epoll_wait`` (level-triggered),
so no read ever ends in ``EAGAIN`` and a flooded socket gets one read per round like every
other: it cannot starve the others or the 20 ms clock (:attr:`rounds` bounds the work done per wake-up).

Sockets added with :meth:`DatagramPoller.add_receiver` (the RTP sockets) are read by the
poller itself and their handlers get the datagram: ``receiver(offset, n, address, now)``, the
octets at ``poller.buffer[offset:offset + n]``.  Where io_uring works
(:mod:`trunkline.media.ring_io`) all the ready receivers of a wake-up are read in one system
call and the packets their handlers relay (:meth:`DatagramPoller.queue_send`) leave in one
more: the per-packet cost of a relayed call is then mostly the kernel's network stack.
Elsewhere each is read with ``recvfrom_into`` and relayed packets go out with ``sendto``.

Where ``select.epoll`` does not exist (not Linux) each socket is registered with the event
loop directly, with the same one-datagram handlers (event loops poll level-triggered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trunkline.media import uring
from trunkline.media.ring_io import ROW, DatagramBatch, Receiver, SendTarget, source_key

if TYPE_CHECKING:
    from trunkline.media.stream_send import RelayGate

__all__ = ["DatagramPoller", "Receiver", "SendTarget"]

log = logging.getLogger(__name__)

Handler = Callable[[float], object]


#: :attr:`DatagramPoller.coalesce` by default.
DEFAULT_COALESCE = 0.002
#: :attr:`DatagramPoller.max_events` with batched I/O: a 2 ms batch of 2,000 calls' packets.
BATCHED_EVENTS = 512


def _ring_wanted() -> bool:
    """io_uring unless ``TRUNKLINE_IO_URING=0`` (or the kernel refuses it)."""
    return os.environ.get("TRUNKLINE_IO_URING", "1") != "0" and uring.available()


class DatagramPoller:
    """A set of non-blocking datagram sockets polled together; each handler reads one datagram.

    ``max_events`` is the most sockets served per ``epoll_wait``; ``rounds`` the most
    ``epoll_wait`` calls per event-loop wake-up (so at most ``rounds`` datagrams per socket
    are read before the loop runs its timers again).  The defaults keep one wake-up to about
    128 datagrams (1-2 ms of work), so the 20 ms clock is never held up by a backlog: with
    1024 x 2 a 500-participant conference over UDP saw ticks start up to 14 ms late after a
    slow tick, with 128 x 1 none were more than 3 ms late over 60 s (``bench/loadgen_conference.py``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        max_events: int | None = None,
        rounds: int = 1,
        ring: bool | None = None,
        coalesce: float | None = None,
    ) -> None:
        self.loop = loop
        self.rounds = rounds
        self._pause: asyncio.TimerHandle | None = None

        self._handlers: dict[int, Handler] = {}
        self._receivers: dict[int, Receiver] = {}
        self._epoll: select.epoll | None = select.epoll() if hasattr(select, "epoll") else None
        self._watching = False
        if ring is None:
            ring = _ring_wanted()
        self._batch: DatagramBatch | None = None
        if ring and self._epoll is not None:
            try:
                self._batch = DatagramBatch(max_events or BATCHED_EVENTS)
            except OSError as exc:
                log.warning("io_uring unavailable (%s): one system call per datagram", exc)
        #: Seconds the poller waits after a wake-up before it looks again (batched I/O only):
        #: what arrives meanwhile is handled in one larger batch, and the batch's fixed cost
        #: (system calls, array operations) is shared by more packets.  It adds at most this
        #: much to a packet's delay through the gateway.
        self.coalesce = (DEFAULT_COALESCE if coalesce is None else coalesce) if self._batch else 0.0
        #: The most sockets served per ``epoll_wait``.
        self.max_events = max_events or (BATCHED_EVENTS if self._batch is not None else 128)
        if self._batch is not None:
            self.buffer = self._batch.buffer
            self.view = self._batch.view
        else:
            self.buffer = bytearray(ROW)
            self.view = memoryview(self.buffer)
        #: Wake-ups and handler calls so far (benchmarks read them: datagrams per wake-up).
        self.wakeups = 0
        self.dispatched = 0

    def __len__(self) -> int:
        return len(self._handlers)

    @property
    def batched(self) -> bool:
        """Whether the sockets share one epoll set (False: one event-loop reader each)."""
        return self._epoll is not None

    @property
    def ring(self) -> bool:
        """Whether receivers are read, and relayed packets sent, a batch per system call."""
        return self._batch is not None

    def queue_send(self, target: SendTarget, offset: int, n: int, owner: Any) -> bool:
        """Queue ``buffer[offset:offset + n]`` for sending to ``target`` when the batch ends.

        Only while a receiver handles a datagram of a batched poller (:attr:`ring`); False
        (nothing queued) otherwise, and the caller sends it itself.  ``owner.send_failed(n)``
        is called if the send fails (a full socket buffer).
        """
        batch = self._batch
        if batch is None:
            return False
        batch.queue_send((target.fd, offset, n, target.ptr, target.size))
        batch.queue_owner(owner)
        return True

    def add(self, fd: int, handler: Handler) -> None:
        """Call ``handler(now)`` whenever ``fd`` is readable; it should read one datagram."""
        if fd in self._handlers:
            raise ValueError(f"descriptor {fd} is already polled")
        self._handlers[fd] = handler
        epoll = self._epoll
        if epoll is None:
            self.loop.add_reader(fd, self._call, handler)
            return
        epoll.register(fd, select.EPOLLIN)
        if not self._watching:
            self.loop.add_reader(epoll.fileno(), self._on_ready)
            self._watching = True

    def add_receiver(self, sock: socket.socket, receiver: Receiver) -> None:
        """Read ``sock``'s datagrams for it: ``receiver(offset, n, address, now)`` gets each one."""
        fd = sock.fileno()
        self._receivers[fd] = receiver
        if self._batch is None:
            self.add(fd, self._reader(sock, receiver))
            return
        self._batch.table.reserve(fd)
        self.add(fd, self._not_batched)

    def replace(self, fd: int, handler: Handler) -> None:
        """Call ``handler(now)`` for ``fd`` from now on instead of its current handler.

        A descriptor that is not polled (any more) is left alone.
        """
        if fd not in self._handlers:
            return
        self._handlers[fd] = handler
        if self._epoll is None:
            self.loop.add_reader(fd, self._call, handler)

    def replace_receiver(self, sock: socket.socket, receiver: Receiver) -> None:
        """Give ``sock``'s datagrams to ``receiver`` from now on (ignored if ``sock`` is not polled)."""
        fd = sock.fileno()
        if fd not in self._receivers:
            return
        self._receivers[fd] = receiver
        if self._batch is None:
            self.replace(fd, self._reader(sock, receiver))

    # -- relay gates ---------------------------------------------------------------------------

    def open_gate(self, sock: socket.socket, gate: RelayGate) -> None:
        """Relay ``sock``'s steady-state packets through ``gate`` (``RtpStream._open_relay_gate``).

        With batched I/O the gate joins the relay table (its packets are relayed a batch at a
        time; any other packet closes it and goes to the socket's receiver); otherwise the
        gate's :meth:`~RelayGate.on_datagram` becomes the socket's receiver.
        """
        batch = self._batch
        key = source_key(gate.source) if batch is not None else None
        if batch is None or key is None:
            self.replace_receiver(sock, gate.on_datagram)
            return
        fd = sock.fileno()
        if fd in self._receivers:
            batch.table.add(fd, gate, key)

    def close_gate(self, sock: socket.socket, receiver: Receiver) -> None:
        """Undo :meth:`open_gate`: ``receiver`` gets every datagram again (the gate's state written back)."""
        if self._batch is not None:
            self._batch.table.remove(sock.fileno())
        self.replace_receiver(sock, receiver)

    def sync_gate(self, sock: socket.socket) -> None:
        """Bring the objects of ``sock``'s open gate (statistics, counters) up to date."""
        batch = self._batch
        if batch is not None:
            table = batch.table
            fd = sock.fileno()
            if 0 <= fd < len(table.gate_of_fd) and table.gate_of_fd[fd] >= 0:
                table.sync(int(table.gate_of_fd[fd]))

    def sync_gates(self, part: int = 0, parts: int = 1) -> None:
        """:meth:`sync_gate` for every open gate (or every ``parts``-th, from ``part``)."""
        if self._batch is not None and self._batch.table.count:
            self._batch.table.sync_all(part, parts)

    def _reader(self, sock: socket.socket, receiver: Receiver) -> Handler:
        recv_into = sock.recvfrom_into
        buffer = self.buffer

        def read_one(now: float) -> None:
            try:
                n, addr = recv_into(buffer)
            except OSError:  # BlockingIOError, InterruptedError, ICMP errors reported on the socket
                return
            receiver(0, n, addr, now)

        return read_one

    def _not_batched(self, now: float) -> None:  # pragma: no cover - receivers are read in batches
        raise AssertionError("a batched receiver was called as a handler")

    def remove(self, fd: int) -> None:
        """Stop polling ``fd`` (call before closing the socket; unknown descriptors are ignored)."""
        if self._receivers.pop(fd, None) is not None and self._batch is not None:
            self._batch.table.remove(fd)
        if self._handlers.pop(fd, None) is None:
            return
        epoll = self._epoll
        if epoll is None:
            self.loop.remove_reader(fd)
            return
        with contextlib.suppress(OSError, ValueError):  # already closed: the kernel dropped it
            epoll.unregister(fd)

    def close(self) -> None:
        """Forget every socket and close the epoll set (the sockets themselves stay open)."""
        epoll = self._epoll
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        if epoll is None:
            for fd in list(self._handlers):
                self.loop.remove_reader(fd)
        else:
            if self._watching:  # (a paused poller has no reader: removing it is a no-op)
                self.loop.remove_reader(epoll.fileno())
                self._watching = False
            epoll.close()
            self._epoll = None
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        self._handlers.clear()
        self._receivers.clear()

    def _call(self, handler: Handler) -> None:
        handler(self.loop.time())

    def _on_ready(self) -> int:
        epoll = self._epoll
        if epoll is None:
            return 0
        poll = epoll.poll
        handlers = self._handlers
        now = self.loop.time()
        self.wakeups += 1
        served = 0
        batch = self._batch
        receivers = self._receivers
        for _ in range(self.rounds):
            events = poll(0, self.max_events)
            if not events:
                break
            served += len(events)
            if batch is None:
                for fd, _mask in events:
                    handler = handlers.get(fd)
                    if handler is not None:
                        handler(now)
                continue
            fds = [fd for fd, _mask in events]
            if len(receivers) < len(handlers):  # some sockets (RTCP) read themselves
                mine = [fd for fd in fds if fd not in receivers]
                if mine:
                    fds = [fd for fd in fds if fd in receivers]
                    for fd in mine:
                        handler = handlers.get(fd)
                        if handler is not None:
                            handler(now)
            if fds:
                batch.receive(fds, receivers, now)
        self.dispatched += served
        if served >= 8 and self.coalesce > 0 and self._pause is None:
            # Busy: from now on look every `coalesce` seconds (a timer), not at every datagram.
            self.loop.remove_reader(epoll.fileno())
            self._pause = self.loop.call_at(now + self.coalesce, self._on_timer)
        return served

    def _on_timer(self) -> None:
        epoll = self._epoll
        if epoll is None:
            self._pause = None
            return
        self._pause = self.loop.call_at(self.loop.time() + self.coalesce, self._on_timer)
        if self._on_ready() == 0:  # quiet again: wake on data
            self._pause.cancel()
            self._pause = None
            self.loop.add_reader(epoll.fileno(), self._on_ready)
