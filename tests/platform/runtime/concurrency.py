"""Running the same work in many threads at once, each with its own client."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from tests.conftest import Api


def in_threads(app: Flask, token: str, count: int, work: Callable[[Api, int], Any]) -> list[Any]:
    """Run ``work(api, index)`` in ``count`` threads, each with its own client, all at once."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        api = Api(app.test_client(), token)
        try:
            barrier.wait(timeout=30)
            results[index] = work(api, index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if failures:
        raise failures[0]
    return results
