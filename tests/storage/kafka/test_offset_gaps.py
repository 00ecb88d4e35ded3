"""Offset continuity: a jump in a partition's offsets is read again before it is believed."""

from __future__ import annotations

from storage.kafka.offset_gaps import OffsetGaps


def admitted(gaps: OffsetGaps[str], offsets: list[int], partition: str = "p") -> list[int]:
    """The offsets processed from one fetch: up to the first refused record."""
    taken = []
    for offset in offsets:
        if not gaps.admit(partition, offset):
            break
        taken.append(offset)
    return taken


def test_contiguous_offsets_are_all_admitted() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=3)
    gaps.expect("p", 10)
    assert admitted(gaps, [10, 11, 12]) == [10, 11, 12]
    assert gaps.expected("p") == 13
    assert (gaps.reread_count, gaps.accepted_count) == (0, 0)


def test_a_jump_is_refused_and_the_reread_fills_it() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=3)
    gaps.expect("p", 0)
    # 3 and 4 were not visible yet: the fetch showed 5 right after 2.
    assert admitted(gaps, [0, 1, 2, 5, 6]) == [0, 1, 2]
    assert gaps.expected("p") == 3
    assert admitted(gaps, [3, 4, 5, 6]) == [3, 4, 5, 6]
    assert (gaps.reread_count, gaps.accepted_count) == (1, 0)


def test_a_jump_at_the_first_record_after_the_committed_offset_is_refused() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=3)
    gaps.expect("p", 7)
    assert admitted(gaps, [9, 10]) == []
    assert gaps.expected("p") == 7


def test_a_gap_still_there_after_every_reread_is_taken_as_real() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=2)
    gaps.expect("p", 0)
    assert admitted(gaps, [0, 4]) == [0]
    assert admitted(gaps, [4]) == []
    assert admitted(gaps, [4, 5]) == [4, 5]
    assert (gaps.reread_count, gaps.accepted_count) == (2, 1)
    # A later gap gets its own re-reads.
    assert admitted(gaps, [8]) == []
    assert gaps.reread_count == 3


def test_rereads_of_earlier_offsets_are_admitted_and_move_the_expectation_back() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=1)
    gaps.expect("p", 20)
    # A redelivery from an older offset (a rebalance, a seek back): the ledger absorbs it.
    assert admitted(gaps, [15, 16]) == [15, 16]
    assert gaps.expected("p") == 17


def test_unknown_start_lets_the_first_record_set_the_expectation() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=1)
    gaps.expect("p", None)
    assert not gaps.knows("p")
    assert admitted(gaps, [42, 43]) == [42, 43]
    assert gaps.knows("p")
    assert gaps.expected("p") == 44


def test_forgotten_partitions_start_afresh_and_others_keep_their_place() -> None:
    gaps: OffsetGaps[str] = OffsetGaps(rereads=1)
    gaps.expect("a", 5)
    gaps.expect("b", 5)
    gaps.forget(["a"])
    assert not gaps.knows("a")
    assert admitted(gaps, [9], partition="a") == [9]
    assert admitted(gaps, [9], partition="b") == []
