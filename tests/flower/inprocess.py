"""A Grid that runs every node's ClientApp in this process, for fast workflow tests.

Messages go straight to each node's app function with that node's persistent Context,
so a workflow and its client mod run end to end without any Flower process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flwr.app import Context, Message
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

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


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    """Messages built outside a Flower process need a task identity."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, SERVER_NODE, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


