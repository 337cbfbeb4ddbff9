"""augmentor.plots: PNG files written whole, figures closed after."""

import pytest
import torch

from augmentor.utils.plots import pyplot, save_figure, save_sample_grid


def test_sample_grid_writes_a_png_and_closes_its_figure(tmp_path):
    images, labels = torch.rand(5, 1, 6, 6), torch.tensor([0, 0, 0, 1, 1])  # class 1 leaves blank cells
    path = save_sample_grid(images, labels, tmp_path / "sub" / "grid.png", "title", per_class=3,
                            class_names={0: "CN", 1: "AD"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pyplot().get_fignums() == []


def test_a_failed_save_leaves_no_file_and_closes_the_figure(tmp_path):
    fig = pyplot().figure()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "bad.png", dpi=-1)
    assert list(tmp_path.iterdir()) == [] and pyplot().get_fignums() == []
