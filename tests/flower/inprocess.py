"""A Grid that runs every node's ClientApp in this process, for fast workflow tests.

Messages go straight to each node's app function with that node's persistent Context,
so a workflow and its client mod run end to end without any Flower process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from secagg.pipeline import TO_SERVER, Bundle

App = Callable[[Message, Context], Message]
SERVER_NODE = 1


class InProcessGrid(Grid):
    """Delivers each message to its node's app in this process; contexts persist."""

    def __init__(self, nodes: dict[int, tuple[Context, App]]) -> None:
        self.nodes = nodes
        self.tamper: Callable[[Message], None] | None = None
        self.sent: list[Message] = []

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for m in messages:
            if self.tamper is not None:
                self.tamper(m)
            self.sent.append(m)
            context, app = self.nodes[m.metadata.dst_node_id]
            replies.append(app(m, context))
        return replies

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def set_run(self, run: Any) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError


def withhold(app: App, *, exchange: int, rounds: set[int] | None = None, answering: int = 0) -> App:
    """``app``, except that in exchange ``exchange`` its reply leaves out its parts for
    ``rounds`` (None: every round) unless its node is one of the first ``answering``
    (node ids 100, 101, ...): the server sees those rounds' step lost for that node."""

    def wrapped(msg: Message, context: Context) -> Message:
        out = app(msg, context)
        rec = msg.content.config_records.get("secagg")
        if rec is None or rec.get("exchange") != exchange or out.has_error():
            return out
        if context.node_id - 100 < answering:
            return out
        data = out.content.config_records["secagg"]["bundle"]
        assert isinstance(data, bytes)
        b = Bundle.decode(data, TO_SERVER, 1 << 30)
        parts = tuple(p for p in b.parts if rounds is not None and p[0] not in rounds)
        kept = Bundle(
            b.direction,
            b.session_id,
            b.exchange,
            b.client,
            parts,
            b.starts,
            b.live_rounds,
            b.descriptor,
        )
        return Message(
            RecordDict({"secagg": ConfigRecord({"bundle": kept.encode()})}), reply_to=msg
        )

    return wrapped


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built outside a Flower process need a task identity."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, SERVER_NODE, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved
