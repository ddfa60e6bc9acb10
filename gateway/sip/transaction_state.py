"""Transaction state machines as one transition table (RFC 3261 figures 5-8, RFC 6026).

In the manner of h11's ``_state.py``: ``TRANSITIONS[kind][state][input]`` is the next
state; a missing entry is an impossible transition. ``TransactionLayer`` raises
``LocalProtocolError`` when the TU attempts one, and silently drops network input that
has none (section 17: late or stray messages are discarded).
"""

from __future__ import annotations

import enum

__all__ = [
    "TIMER_INPUTS",
    "TRANSITIONS",
    "LocalProtocolError",
    "TransactionKind",
    "TransactionState",
    "TxInput",
    "next_state",
    "recv_input",
    "send_input",
]


class LocalProtocolError(Exception):
    """The TU asked for something the transaction state machine forbids (h11 naming)."""


# --------------------------------------------------------------------------------------
# State machines (figures 5-8 of RFC 3261, amended by RFC 6026 figures 3 and 5)
# --------------------------------------------------------------------------------------


class TransactionKind(enum.Enum):
    """The four transaction state machines of section 17."""

    INVITE_CLIENT = "invite-client"
    NON_INVITE_CLIENT = "non-invite-client"
    INVITE_SERVER = "invite-server"
    NON_INVITE_SERVER = "non-invite-server"


class TransactionState(enum.Enum):
    """Transaction states (Accepted is RFC 6026's)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TxInput(enum.Enum):
    """Inputs of the state machines: received messages, TU actions, timers, errors."""

    RECV_1XX = "recv 1xx"
    RECV_2XX = "recv 2xx"
    RECV_FINAL = "recv 300-699"
    RECV_REQUEST = "recv request retransmission"
    RECV_ACK = "recv ACK"
    SEND_1XX = "send 1xx"
    SEND_2XX = "send 2xx"
    SEND_FINAL = "send 300-699"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"
    TIMER_TRYING = "100 Trying timer"
    TIMER_CANCEL = "CANCEL timer"
    TRANSPORT_ERROR = "transport error"


_K = TransactionKind
_S = TransactionState
_I = TxInput

TRANSITIONS: dict[TransactionKind, dict[TransactionState, dict[TxInput, TransactionState]]] = {
    # Section 17.1.1.2, figure 5; RFC 6026 section 7.2 (Accepted, Timer M).
    _K.INVITE_CLIENT: {
        _S.CALLING: {
            _I.RECV_1XX: _S.PROCEEDING,
            _I.RECV_2XX: _S.ACCEPTED,
            _I.RECV_FINAL: _S.COMPLETED,
            _I.TIMER_A: _S.CALLING,
            _I.TIMER_B: _S.TERMINATED,
            _I.TIMER_CANCEL: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.PROCEEDING: {
            _I.RECV_1XX: _S.PROCEEDING,
            _I.RECV_2XX: _S.ACCEPTED,
            _I.RECV_FINAL: _S.COMPLETED,
            _I.TIMER_CANCEL: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.COMPLETED: {
            _I.RECV_FINAL: _S.COMPLETED,
            _I.TIMER_D: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.ACCEPTED: {
            _I.RECV_2XX: _S.ACCEPTED,
            _I.TIMER_M: _S.TERMINATED,
        },
    },
    # Section 17.1.2.2, figure 6.
    _K.NON_INVITE_CLIENT: {
        _S.TRYING: {
            _I.RECV_1XX: _S.PROCEEDING,
            _I.RECV_2XX: _S.COMPLETED,
            _I.RECV_FINAL: _S.COMPLETED,
            _I.TIMER_E: _S.TRYING,
            _I.TIMER_F: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.PROCEEDING: {
            _I.RECV_1XX: _S.PROCEEDING,
            _I.RECV_2XX: _S.COMPLETED,
            _I.RECV_FINAL: _S.COMPLETED,
            _I.TIMER_E: _S.PROCEEDING,
            _I.TIMER_F: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.COMPLETED: {
            _I.RECV_1XX: _S.COMPLETED,
            _I.RECV_2XX: _S.COMPLETED,
            _I.RECV_FINAL: _S.COMPLETED,
            _I.TIMER_K: _S.TERMINATED,
        },
    },
    # Section 17.2.1, figure 7; RFC 6026 section 7.1 (Accepted, Timer L).
    _K.INVITE_SERVER: {
        _S.PROCEEDING: {
            _I.RECV_REQUEST: _S.PROCEEDING,
            _I.SEND_1XX: _S.PROCEEDING,
            _I.SEND_2XX: _S.ACCEPTED,
            _I.SEND_FINAL: _S.COMPLETED,
            _I.TIMER_TRYING: _S.PROCEEDING,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.COMPLETED: {
            _I.RECV_REQUEST: _S.COMPLETED,
            _I.RECV_ACK: _S.CONFIRMED,
            _I.TIMER_G: _S.COMPLETED,
            _I.TIMER_H: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.CONFIRMED: {
            _I.RECV_REQUEST: _S.CONFIRMED,
            _I.RECV_ACK: _S.CONFIRMED,
            _I.TIMER_I: _S.TERMINATED,
        },
        _S.ACCEPTED: {
            _I.RECV_REQUEST: _S.ACCEPTED,
            _I.RECV_ACK: _S.ACCEPTED,
            _I.SEND_2XX: _S.ACCEPTED,
            _I.TIMER_L: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.ACCEPTED,
        },
    },
    # Section 17.2.2, figure 8.
    _K.NON_INVITE_SERVER: {
        _S.TRYING: {
            _I.RECV_REQUEST: _S.TRYING,
            _I.SEND_1XX: _S.PROCEEDING,
            _I.SEND_2XX: _S.COMPLETED,
            _I.SEND_FINAL: _S.COMPLETED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.PROCEEDING: {
            _I.RECV_REQUEST: _S.PROCEEDING,
            _I.SEND_1XX: _S.PROCEEDING,
            _I.SEND_2XX: _S.COMPLETED,
            _I.SEND_FINAL: _S.COMPLETED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
        _S.COMPLETED: {
            _I.RECV_REQUEST: _S.COMPLETED,
            _I.TIMER_J: _S.TERMINATED,
            _I.TRANSPORT_ERROR: _S.TERMINATED,
        },
    },
}

TIMER_INPUTS: dict[str, TxInput] = {name: TxInput[f"TIMER_{name}"] for name in "ABDEFGHIJKLM"}
TIMER_INPUTS["TRYING"] = _I.TIMER_TRYING
TIMER_INPUTS["CANCEL"] = _I.TIMER_CANCEL


def next_state(kind: TransactionKind, state: TransactionState, inp: TxInput) -> TransactionState | None:
    """The state ``inp`` leads to from ``state``, or ``None`` if the table has no such transition."""
    return TRANSITIONS[kind].get(state, {}).get(inp)


def recv_input(status: int) -> TxInput:
    """The input a received response of ``status`` is."""
    return _I.RECV_1XX if status < 200 else _I.RECV_2XX if status < 300 else _I.RECV_FINAL


def send_input(status: int) -> TxInput:
    """The input a response of ``status`` sent by the TU is."""
    return _I.SEND_1XX if status < 200 else _I.SEND_2XX if status < 300 else _I.SEND_FINAL
