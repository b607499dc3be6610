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
