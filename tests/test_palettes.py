"""Class colours: one per value across a run's label columns, the classes of any column apart."""

from __future__ import annotations

from morphospace.image.palettes import LABEL_PALETTE, class_colours


def test_a_small_column_keeps_deep_distinct_colours_beside_many_other_classes():
    # 13 classes in all (a review found a yes / no column turned into two greens of turbo)
    columns = [["elliptical", "spiral", "uncertain"], [0, 1], ["no", "yes"], list("abcdef")]
    colours = class_colours(columns)
    assert len(colours) == 13
    for column in columns:
        shown = [colours[str(v)] for v in column]
        assert len(set(shown)) == len(shown)  # apart within the column
        assert set(shown) <= set(LABEL_PALETTE)  # and in the deep palette


def test_a_value_has_one_colour_and_missing_values_none():
    colours = class_colours([["spiral", None, "", "(missing)", float("nan")], ["elliptical", "spiral"]])
    assert set(colours) == {"elliptical", "spiral"} and colours["spiral"] != colours["elliptical"]


def test_a_column_of_more_classes_than_the_palette_gets_distinct_colours():
    colours = class_colours([list(range(14)), ["x", "y"]])
    assert len({colours[str(v)] for v in range(14)}) == 14


def test_a_small_column_keeps_deep_colours_beside_a_column_of_many():
    # a T-type column of 16 classes beside gz1_class turned every class of the run to turbo (review)
    colours = class_colours([list(range(-5, 11)), ["elliptical", "spiral", "uncertain"]])
    assert all(colours[c] in LABEL_PALETTE for c in ("elliptical", "spiral", "uncertain"))
    t_types = [colours[str(t)] for t in range(-5, 11)]
    assert len(set(t_types)) == 16 and sum(c in LABEL_PALETTE for c in t_types) == 10
    # columns of at most 10 classes whose greedy places reach past 10: the first 10 places stay deep
    columns = [[str(i) for i in range(10)], [str(i) for i in range(10, 19)] + ["z"], ["9", "z"]]
    colours = class_colours(columns)
    assert [c for c in colours if colours[c] not in LABEL_PALETTE] == ["z"]  # the one an 11th place
    assert all(len({colours[v] for v in column}) == len(column) for column in columns)
