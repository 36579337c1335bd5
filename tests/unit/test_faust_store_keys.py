"""How the Faust store keys its rows: a subject's rows are exactly the keys under its prefix.

`rows_of` and `has_rows` scan RocksDB from the subject's prefix while keys start with it, so
a key must start with a subject's prefix if and only if the row belongs to that subject, and
the row id must come back from the key.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lethe.faust_store import decode_row_key, row_key, subject_prefix

subjects = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", "a", "a\x00", "\x00"]))
key_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8)
)
keys = st.lists(st.tuples(st.text(min_size=1, max_size=6), key_values), min_size=1, max_size=3)
row_ids = st.tuples(subjects, st.text(min_size=1, max_size=12), keys.map(tuple))


@given(row_ids)
def test_a_row_id_comes_back_from_its_key(row_id):
    assert decode_row_key(row_key(row_id)) == row_id


@given(row_ids, subjects)
def test_a_key_starts_with_a_subjects_prefix_only_for_that_subjects_rows(row_id, subject):
    assert row_key(row_id).startswith(subject_prefix(subject)) == (row_id[0] == subject)


def test_a_subjects_rows_sort_together_whatever_the_other_subjects():
    ids = [
        ("a", "public.orders", (("id", 1),)),
        ("a\x00b", "public.orders", (("id", 2),)),
        ("a", "public.invoices", (("id", 3),)),
        ("ab", "public.orders", (("id", 4),)),
        (None, "public.data_breaches", (("id", 5),)),
        ("a", "public.orders", (("id", 6),)),
    ]
    ordered = [decode_row_key(key) for key in sorted(row_key(row_id) for row_id in ids)]
    subjects_in_order = [row_id[0] for row_id in ordered]
    assert subjects_in_order == [None, "a", "a", "a", "a\x00b", "ab"]
