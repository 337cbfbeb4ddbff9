"""augmentor.batching: index batches safe for BatchNorm, and a function mapped over batches."""

import torch

from augmentor.utils.batching import index_batches, map_batches


def test_index_batches_cover_every_index_once_in_order():
    order = torch.randperm(23, generator=torch.Generator().manual_seed(0))
    batches = index_batches(order, 5)
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat(batches), order)


def test_a_trailing_single_index_joins_the_previous_batch():
    assert [len(b) for b in index_batches(torch.arange(11), 5)] == [5, 6]
    assert [len(b) for b in index_batches(torch.arange(1), 5)] == [1]  # nothing to join


def test_map_batches_runs_in_order_without_gradients():
    x = torch.arange(10.0, requires_grad=True)
    seen = []

    def double(batch):
        seen.append(len(batch))
        return batch * 2

    parts = map_batches(double, x, 4, "cpu")
    assert seen == [4, 4, 2]
    assert torch.equal(torch.cat(parts), torch.arange(10.0) * 2)
    assert not any(p.requires_grad for p in parts)
