"""Progress bars: a widget in notebooks, a text bar on the terminal, nothing when disabled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


@contextmanager
def progress(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Iterator[Any]:
    """A progress bar (``tqdm.auto``) as a context manager; ``.update(n)`` advances it."""
    if not enabled:
        yield _Silent()
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)
    try:
        yield bar
    finally:
        bar.close()
