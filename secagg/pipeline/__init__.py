"""Multi-round secure aggregation in fewer exchanges: the pipelined mode.

One SecAgg round needs four client-server steps (advertise keys, share keys, masked
input, unmasking; five with the active setting's consistency step). On an engine where
every exchange costs seconds whatever it carries (Flower starts a process per message),
the steps, not the crypto, set the round time. The pipeline overlaps consecutive rounds:
round r+1's key sharing rides on round r's training exchange, round r+2's key
advertisement on round r's unmasking exchange, and the masked input rides on the
training reply. After a two-exchange bootstrap a training round costs

* honest-but-curious: TRAIN (model down; masked input r and shares r+1 up), UNMASK
  (statuses r down; unmasking shares r and keys r+2 up): **2 exchanges**;
* active: TRAIN, CHECK (statuses r down, view r up), UNMASK (attestations r down;
  shares r and keys r+2 up): **3 exchanges**.

Every round is a separate instance of the one-round protocol (:class:`SecAggClient`,
:class:`SecAggServer`) with its own round index, fresh X25519 channel and mask key
pairs and a fresh self-mask seed, Shamir-shared anew: nothing whose shares exist feeds
another round's derivation. The pipeline only multiplexes the rounds' messages into one
envelope (``SAGP``) per exchange and client. Per round a client answers one unmasking
request, releases no share before that round's statuses are fixed (and certified, in
the active setting), and forgets the round's shares once it has answered; an identical
redelivered request gets the same bytes and any other request for that round is refused.

What a client accepts comes from its provisioning: the session's parameters must be
exactly its policy's, and its durable records refuse a replayed bootstrap. Modules:
:mod:`.schedule`, :mod:`.envelope`, :mod:`.descriptor`, :mod:`.server`, :mod:`.client`.
Security argument and schedule: docs/pipeline.md.
"""

from secagg.pipeline.client import ClientReport, PipelineClient, RoundClosedError, StateLostError
from secagg.pipeline.descriptor import SessionDescriptor
from secagg.pipeline.envelope import MAGIC, TO_CLIENT, TO_SERVER, VERSION, Bundle, max_part_bytes
from secagg.pipeline.schedule import MAX_ROUNDS, ExchangeKind, Schedule, describe_schedule
from secagg.pipeline.server import PipelineServer, RoundEnd

__all__ = [
    "MAGIC",
    "MAX_ROUNDS",
    "TO_CLIENT",
    "TO_SERVER",
    "VERSION",
    "Bundle",
    "ClientReport",
    "ExchangeKind",
    "PipelineClient",
    "PipelineServer",
    "RoundClosedError",
    "RoundEnd",
    "Schedule",
    "SessionDescriptor",
    "StateLostError",
    "describe_schedule",
    "max_part_bytes",
]
