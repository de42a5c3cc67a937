"""Text deltas as they come, then one final result: the shape of every answer and summary.

Generators in ``answering`` and ``summaries`` yield ``str`` pieces and end with an ``Answer`` or
``Summary``. Front-ends should not each unpack that protocol by hand; they iterate a
``Stream`` for the text and read ``.result`` at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Stream(Generic[T]):
    def __init__(self, items: Iterator[str | T], result_type: type[T]) -> None:
        self._items = items
        self._type = result_type
        self._result: T | None = None

    def __iter__(self) -> Iterator[str]:
        for item in self._items:
            if isinstance(item, self._type):
                self._result = item
                return
            yield item  # type: ignore[misc]

    @property
    def result(self) -> T:
        if self._result is None:
            raise RuntimeError("the stream has not produced its result yet")
        return self._result

    def finish(self) -> T:
        """Consume what is left (the text is dropped) and return the result."""
        for _ in self:
            pass
        return self.result
