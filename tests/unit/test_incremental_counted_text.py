"""The keys of more than one row come back from the counting statement as one text, which MariaDB cuts at
`group_concat_max_len`: every cut is told from a whole text, so no group is read with a count cut short."""

from monitor.incremental.check import counted_keys

WHOLE = "[1,7] 2. [2,30] 12. [3,5] 3."


def test_a_whole_text_is_read_as_its_keys_and_counts():
    assert counted_keys(WHOLE, 3) == [("[1,7]", 2), ("[2,30]", 12), ("[3,5]", 3)]
    assert counted_keys(None, 0) == [] and counted_keys("", 0) == []


def test_every_cut_of_the_text_is_told_from_a_whole_one():
    """A cut within the last count ('[2,30] 1' of 12) read as whole made a group of 12 rows a group of one; a cut
    after a separator failed the run (int(''))."""
    for end in range(len(WHOLE)):
        assert counted_keys(WHOLE[:end], 3) is None, WHOLE[:end]
