"""The one base of every object in this package that holds secret material."""

from __future__ import annotations

from typing import NoReturn


class Opaque:
    """Prints as ``***`` in every form (``repr``, ``str``, f-strings, logging) and
    refuses to be pickled or copied, so that a key cannot end up in a log line, a
    cache, a task queue or a session store by accident. Subclasses define their own
    ``__slots__``; this one adds no attribute."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "***"

    def __str__(self) -> str:
        return "***"

    def __format__(self, format_spec: str) -> str:
        return "***"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds a key: it cannot be pickled or copied")

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds a key: it cannot be pickled or copied")

    def __getstate__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} holds a key: it cannot be pickled or copied")
