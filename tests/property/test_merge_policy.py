"""The catalogue merge policy (``atlas.catalog.merge.choose_merge``) under any commit sizes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from atlas.catalog import merge
from atlas.catalog.merge import MAX_PARTS, choose_merge

_sizes = st.lists(st.one_of(st.integers(0, 3), st.integers(0, 10**6), st.just(10**12)), min_size=1, max_size=300)


@given(
    base=st.lists(st.integers(0, 10**9), max_size=MAX_PARTS - 1),
    sizes=_sizes,
    max_parts=st.integers(1, 10),
    ratio=st.integers(0, 9),
    few=st.integers(0, 10),
    few_ratio=st.integers(0, 5),
)
def test_a_commit_never_leaves_more_parts_than_the_cap(base, sizes, max_parts, ratio, few, few_ratio):
    parts = base[: max(max_parts - 1, 0)]
    for rows in sizes:
        parts.append(rows)
        start = choose_merge(parts, max_parts=max_parts, ratio=ratio, few=few, few_ratio=few_ratio)
        assert start is None or 0 <= start < len(parts) - 1
        if start is not None:
            parts[start:] = [sum(parts[start:])]
        assert len(parts) <= max(max_parts, 1)



@given(
    rows=st.lists(st.one_of(st.integers(0, 3), st.integers(0, 10**6), st.just(10**12)), min_size=2, max_size=20),
    max_parts=st.integers(1, 10),
    ratio=st.integers(1, 9),
)
def test_over_the_cap_the_walk_takes_the_smallest_ratio_that_fits(rows, max_parts, ratio):
    fitting = merge._fitting_ratio(rows, max_parts, ratio)
    assert fitting >= ratio and merge._walk(rows, fitting) + 1 <= max_parts
    if fitting > ratio:  # one less would leave too many parts
        assert merge._walk(rows, fitting - 1) + 1 > max_parts
