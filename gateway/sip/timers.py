"""SIP timer values (RFC 3261 section 17 and Table 4 of Appendix A; RFC 6026 section 8.11).

The transaction layer never reads a clock: every timer is a deadline computed from
an explicit ``now`` passed in by the caller. This module holds the configurable base
values (T1, T2, T4) and the table that derives every named timer from them, for
unreliable (UDP) and reliable (TCP, TLS, WS) transports.

=======  ============================  =====================  ==================
Timer    Meaning                       Unreliable transport   Reliable transport
=======  ============================  =====================  ==================
A        INVITE request retransmit     T1, doubling           not used
B        INVITE transaction timeout    64*T1                  64*T1
D        wait for response retransmits 32 s (at least)        0
E        non-INVITE request retransmit T1, doubling up to T2  not used
F        non-INVITE transaction timeout 64*T1                 64*T1
G        INVITE response retransmit    T1, doubling up to T2  not used
H        wait for ACK receipt          64*T1                  64*T1
I        wait for ACK retransmits      T4                     0
J        wait for non-INVITE retransm. 64*T1                  0
K        wait for response retransmits T4                     0
L        Accepted state (server, 6026) 64*T1                  64*T1
M        Accepted state (client, 6026) 64*T1                  64*T1
=======  ============================  =====================  ==================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TIMERS", "TimerConfig"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Base timer values in seconds.

    ``t1`` is the RTT estimate (default 500 ms), ``t2`` the maximum retransmit
    interval for non-INVITE requests and INVITE responses (default 4 s), ``t4`` the
    maximum duration a message remains in the network (default 5 s), all per
    RFC 3261 section 17.1.1.1 and Table 4.

    ``trying_delay`` is how long an INVITE server transaction waits for the TU's own
    provisional response before it sends ``100 Trying`` itself. RFC 3261 section
    17.2.1: the server transaction "MUST generate a 100 (Trying) response unless it
    knows that the TU will generate a provisional or final response within 200 ms".
    The layer cannot know, so by default it arms a 200 ms timer: a TU that answers
    faster (cached TwiML) saves a datagram, a slow one (webhook fetch) still stops
    the client's Timer A before its first retransmission at T1. A retransmitted
    INVITE received before that timer fires gets the ``100 Trying`` at once. Set
    ``trying_delay=0`` to send it immediately on every INVITE.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float = 0.2

    def __post_init__(self) -> None:
        if self.t1 <= 0 or self.t2 < self.t1 or self.t4 < 0:
            raise ValueError(f"invalid SIP timers T1={self.t1} T2={self.t2} T4={self.t4}")
        if self.trying_delay < 0:
            raise ValueError(f"invalid trying_delay {self.trying_delay}")

    # --- client transactions (RFC 3261 section 17.1) ---------------------------------

    def timer_a(self, reliable: bool) -> float | None:
        """Initial INVITE retransmit interval; ``None`` on reliable transports (17.1.1.2)."""
        return None if reliable else self.t1

    @property
    def timer_b(self) -> float:
        """INVITE client transaction timeout, 64*T1 (17.1.1.2)."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Completed-state lifetime of an INVITE client transaction (17.1.1.2).

        "at least 32 seconds for unreliable transports, and a value of zero seconds
        for reliable transports"; we take max(32 s, 64*T1) so that it always covers
        Timer H of the server.
        """
        return 0.0 if reliable else max(32.0, 64 * self.t1)

    def timer_e(self, reliable: bool) -> float | None:
        """Initial non-INVITE retransmit interval; ``None`` on reliable transports (17.1.2.2)."""
        return None if reliable else self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout, 64*T1 (17.1.2.2)."""
        return 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Completed-state lifetime of a non-INVITE client transaction: T4 or 0 (17.1.2.2)."""
        return 0.0 if reliable else self.t4

    @property
    def timer_m(self) -> float:
        """Accepted-state lifetime of an INVITE client transaction, 64*T1 (RFC 6026 section 8.4)."""
        return 64 * self.t1

    # --- server transactions (RFC 3261 section 17.2) ---------------------------------

    def timer_g(self, reliable: bool) -> float | None:
        """Initial final-response retransmit interval; ``None`` on reliable transports (17.2.1)."""
        return None if reliable else self.t1

    @property
    def timer_h(self) -> float:
        """Wait for the ACK of a non-2xx final response, 64*T1 (17.2.1)."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """Confirmed-state lifetime (absorbs ACK retransmissions): T4 or 0 (17.2.1)."""
        return 0.0 if reliable else self.t4

    def timer_j(self, reliable: bool) -> float:
        """Completed-state lifetime of a non-INVITE server transaction: 64*T1 or 0 (17.2.2)."""
        return 0.0 if reliable else 64 * self.t1

    @property
    def timer_l(self) -> float:
        """Accepted-state lifetime of an INVITE server transaction, 64*T1 (RFC 6026 section 8.7)."""
        return 64 * self.t1

    # --- retransmission back-off --------------------------------------------------

    def next_interval(self, interval: float, *, capped: bool) -> float:
        """The interval after ``interval``: doubled, and capped at T2 when ``capped``.

        Timer A (INVITE requests) doubles without a cap (17.1.1.2: "intervals that
        double after each transmission"); Timers E and G and the 2xx retransmission
        of section 13.3.1.4 double up to T2.
        """
        doubled = 2 * interval
        return min(doubled, self.t2) if capped else doubled


DEFAULT_TIMERS = TimerConfig()
