"""The one Markdown table writer of the studies' reports (pipelines.common.markdown)."""

import pytest

from pipelines.common.markdown import render_table


def test_a_table_has_its_header_alignment_row_and_rows():
    text = render_table(["Method", "Runs", "Acc."], [["Real", "2", "50.0"], ["Real + VAE - ours", "2", "55.5"]], "lrr")
    assert text.splitlines() == [
        "| Method | Runs | Acc. |",
        "|---|---:|---:|",
        "| Real | 2 | 50.0 |",
        "| Real + VAE - ours | 2 | 55.5 |",
    ]


@pytest.mark.parametrize("align", ["lr", "lrx", "lrrr"])
def test_an_alignment_that_does_not_fit_the_columns_is_refused(align):
    with pytest.raises(ValueError, match="one of the 3 columns|each of the 3 columns"):
        render_table(["a", "b", "c"], [], align)
