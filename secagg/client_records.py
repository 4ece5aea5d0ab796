"""Security records a client keeps in durable storage, across sessions and restarts.

A pipelined client's round state can be lost (a node restarts, its store is wiped); its
records must not be, or a server could replay a bootstrap and make it advertise a round
again. :class:`ClientRecords` is small, versioned and kept apart from the round state:

* the highest session counter it accepted, that session's id and the last exchange it
  answered in it: a bundle is accepted only for a newer session, or for the same session
  at a later exchange (:meth:`ClientRecords.admit`).

Whoever drives the client stores :meth:`ClientRecords.to_bytes` after every exchange
(the Flower mod keeps it in the node's persistent state, keyed by identity).
"""

from __future__ import annotations

from dataclasses import dataclass

from secagg.errors import MessageFormatError, ReplayedSessionError
from secagg.wire import Reader, Writer

MAGIC = b"SACR"
VERSION = 1


@dataclass
class ClientRecords:
    """What must survive the loss of a client's round state."""

    session_counter: int = 0
    session_id: bytes = b""
    last_exchange: int = -1

    def admit(self, counter: int, session_id: bytes, exchange: int) -> None:
        """Accept exchange ``exchange`` of session (``counter``, ``session_id``), or raise
        :class:`ReplayedSessionError`; records it when accepted."""
        if counter > self.session_counter:
            if session_id == self.session_id:
                raise ReplayedSessionError(
                    "this session id was accepted before under a lower counter: a session "
                    "is never set up twice"
                )
            self.session_counter, self.session_id, self.last_exchange = (
                counter,
                session_id,
                exchange,
            )
            return
        if counter == self.session_counter and session_id == self.session_id:
            if exchange > self.last_exchange:
                self.last_exchange = exchange
                return
            raise ReplayedSessionError(
                f"exchange {exchange} of this session is not after the last one answered "
                f"({self.last_exchange})"
            )
        raise ReplayedSessionError(
            f"session counter {counter} is not above the last accepted one ({self.session_counter})"
        )

    def to_bytes(self) -> bytes:
        """The versioned byte form."""
        w = Writer().raw(MAGIC).u8(VERSION).u64(self.session_counter).blob(self.session_id)
        return w.u64(self.last_exchange + 1).getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientRecords:
        """Parse :meth:`to_bytes`; :class:`MessageFormatError` if it is bad."""
        r = Reader(bytes(data))
        if r.remaining < 5 or r.raw(4) != MAGIC or r.u8() != VERSION:
            raise MessageFormatError("not saved client records (magic or version)")
        out = cls(r.u64(), r.blob(64), r.u64() - 1)
        r.end()
        return out
