"""What a job is: a named Python function with its queue and retry budget.

Job functions register here at import time (``@jobs.job("imports.run")``), in the web
process and the worker alike; a row of the ``jobs`` table names one and carries its
keyword arguments as JSON. ``TRELLIS_JOB_MODULES`` lists extra modules to import so both
processes know the same jobs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trellis.platform.runtime.jobs.runner import JobContext

JobFunction = Callable[..., Any]
# "imports.run", "dealers.deactivate_expired": dotted lower-case identifiers.
JOB_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TIMEOUT = 3600
BACKOFF_CAP_SECONDS = 3600


class UnknownJob(LookupError):
    """No job of that name is registered in this process (a programming error)."""


@dataclass(frozen=True)
class JobDefinition:
    """A registered job: its name, function, RQ queue, attempts and RQ timeout (seconds)."""

    name: str
    function: JobFunction
    queue: str = DEFAULT_QUEUE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout: int = DEFAULT_TIMEOUT

    def __call__(self, ctx: JobContext, **payload: Any) -> Any:
        """Run the function (the runner calls this, with the job's payload as keywords)."""
        return self.function(ctx, **payload)


_definitions: dict[str, JobDefinition] = {}


def job(
    name: str,
    *,
    queue: str = DEFAULT_QUEUE,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: int = DEFAULT_TIMEOUT,
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated ``function(ctx, **payload)`` as the job ``name``.

    Registering the same name again replaces it (a module imported twice, a test's own
    version); the function itself is returned unchanged, so it can still be called directly.
    """
    if not (JOB_NAME.match(name) and JOB_NAME.match(queue)) or len(name) > 100 or len(queue) > 40:
        raise ValueError(f"job and queue names are dotted lower-case identifiers: {name!r}")
    if max_attempts < 1 or timeout < 1:
        raise ValueError("a job needs at least one attempt and a positive timeout")

    def register(function: JobFunction) -> JobFunction:
        _definitions[name] = JobDefinition(name, function, queue, max_attempts, timeout)
        return function

    return register


def definition(name: str) -> JobDefinition:
    """The job registered as ``name``; ``UnknownJob`` when this process has none."""
    try:
        return _definitions[name]
    except KeyError:
        raise UnknownJob(f"no job named {name!r} is registered in this process") from None


def backoff_seconds(attempt: int, base: float) -> float:
    """How long to wait after failed attempt ``attempt`` (1, 2, …): ``base`` doubled each
    time, at most an hour, with "equal jitter" (half fixed, half random), so many failures
    at once do not all come back at the same moment.
    """
    delay = min(BACKOFF_CAP_SECONDS, base * 2 ** max(attempt - 1, 0))
    return delay / 2 + random.uniform(0, delay / 2)
