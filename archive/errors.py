"""The archive's exceptions: one base class, one subclass per refusal a caller may handle."""

from __future__ import annotations


class ArchiveError(Exception):
    """Base of every error the archive raises on purpose."""


class LogGapError(ArchiveError):
    """A batch does not start at tail + 1 or is not contiguous; nothing was written."""

    def __init__(self, message: str, *, tail: int, first: int) -> None:
        super().__init__(message)
        self.tail = tail
        self.first = first


class TermRegressionError(ArchiveError):
    """A batch's term is below the log's tail term or decreases inside the batch."""

    def __init__(self, message: str, *, tail_term: int, term: int) -> None:
        super().__init__(message)
        self.tail_term = tail_term
        self.term = term


class CorruptEntryError(ArchiveError):
    """An entry is malformed (payload not non-empty bytes, or a bad field); nothing was written."""


class ArchiveUnavailableError(ArchiveError):
    """The database failed during a write. For an append the outcome is unknown: re-read tail()."""


class RetentionError(ArchiveError):
    """delete_before() was asked to cut past the latest snapshot or past a needed position."""


class SnapshotConflictError(ArchiveError):
    """A snapshot already exists at that position with a different digest or term."""


class RangeUnavailableError(ArchiveError):
    """The archive no longer (or not yet) holds a requested range of positions."""

    def __init__(self, message: str, *, needed: int, first_available: int | None) -> None:
        super().__init__(message)
        self.needed = needed
        self.first_available = first_available


class FencedError(ArchiveError):
    """A publish was refused because the cluster's fence is missing or holds another term."""

    def __init__(self, term: int, current_fence: int | None) -> None:
        if current_fence is None:
            message = f"publish of term {term} refused: the fence is missing (not set since Redis started)"
        else:
            message = f"publish of term {term} refused: the fence is at term {current_fence}"
        super().__init__(message)
        self.term = term
        self.current_fence = current_fence


class StaleEntryError(ArchiveError):
    """A publish was refused because the stream already holds an entry id at or past the batch's."""

    def __init__(self, entry_id: str, last_id: str) -> None:
        super().__init__(
            f"publish refused: entry id {entry_id} is not above the stream's last id {last_id}"
        )
        self.entry_id = entry_id
        self.last_id = last_id


class TrimmedError(ArchiveError):
    """The position a reader needs is no longer on the stream (trimmed, or the stream was lost).

    The caller should catch up from an archive (replay) and then resume on the stream.
    """

    def __init__(self, needed: int, first_available: int) -> None:
        super().__init__(
            f"position {needed} is no longer on the stream; the first position available is "
            f"{first_available}: catch up from an archive"
        )
        self.needed = needed
        self.first_available = first_available
