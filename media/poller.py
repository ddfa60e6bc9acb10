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

Where ``select.epoll`` does not exist (not Linux) each socket is registered with the event
loop directly, with the same one-datagram handlers (event loops poll level-triggered).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import Callable

__all__ = ["DatagramPoller"]

Handler = Callable[[float], object]


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
        max_events: int = 128,
        rounds: int = 1,
    ) -> None:
        self.loop = loop
        self.max_events = max_events
        self.rounds = rounds

        self._handlers: dict[int, Handler] = {}
        self._epoll: select.epoll | None = select.epoll() if hasattr(select, "epoll") else None
        self._watching = False
        #: Wake-ups and handler calls so far (benchmarks read them: datagrams per wake-up).
        self.wakeups = 0
        self.dispatched = 0

    def __len__(self) -> int:
        return len(self._handlers)

    @property
    def batched(self) -> bool:
        """Whether the sockets share one epoll set (False: one event-loop reader each)."""
        return self._epoll is not None

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

    def replace(self, fd: int, handler: Handler) -> None:
        """Call ``handler(now)`` for ``fd`` from now on instead of its current handler.

        A descriptor that is not polled (any more) is left alone.
        """
        if fd not in self._handlers:
            return
        self._handlers[fd] = handler
        if self._epoll is None:
            self.loop.add_reader(fd, self._call, handler)

    def remove(self, fd: int) -> None:
        """Stop polling ``fd`` (call before closing the socket; unknown descriptors are ignored)."""
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
        if epoll is None:
            for fd in list(self._handlers):
                self.loop.remove_reader(fd)
        else:
            if self._watching:
                self.loop.remove_reader(epoll.fileno())
                self._watching = False
            epoll.close()
            self._epoll = None
        self._handlers.clear()

    def _call(self, handler: Handler) -> None:
        handler(self.loop.time())

    def _on_ready(self) -> None:
        epoll = self._epoll
        if epoll is None:
            return
        poll = epoll.poll
        handlers = self._handlers
        now = self.loop.time()
        self.wakeups += 1
        served = 0
        for _ in range(self.rounds):
            events = poll(0, self.max_events)
            if not events:
                break
            served += len(events)
            for fd, _mask in events:
                handler = handlers.get(fd)
                if handler is not None:
                    handler(now)
        self.dispatched += served
