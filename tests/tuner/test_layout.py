"""region_layout: bands, sequence length and the attention mask (docs/method.md §2)."""

import pytest
import torch

from par_prompt import region_layout
from par_prompt.tuner.layout import region_bands


def test_paper_layout_for_vit_l14():
    layout = region_layout(16, 4, 2, 10)
    assert layout.region_rows == [(0, 4), (3, 8), (7, 12), (11, 15)]
    assert layout.length == 311
    assert [len(layout.region_patch_indices(j)) for j in range(1, 5)] == [80, 96, 96, 80]
    assert layout.mask.shape == (311, 311) and layout.mask.dtype == torch.bool


def test_remainder_rows_go_to_the_first_bands():
    # G=7, K=3: base bands of 3, 2, 2 rows (0-2, 3-4, 5-6), widened by 1 up and 1 down.
    assert region_bands(7, 3, 2) == [(0, 3), (2, 5), (4, 6)]
    # G=14, K=4: 4, 4, 3, 3 rows.
    assert region_bands(14, 4, 2) == [(0, 4), (3, 8), (7, 11), (10, 13)]
    # Odd overlap: the extra row goes down.
    assert region_bands(16, 4, 3) == [(0, 5), (3, 9), (7, 13), (11, 15)]
    assert region_bands(16, 4, 0) == [(0, 3), (4, 7), (8, 11), (12, 15)]


@pytest.mark.parametrize("grid", [7, 14, 24])
@pytest.mark.parametrize("regions", [3, 4, 5, 6])
def test_bands_cover_the_grid_in_order(grid, regions):
    plain = region_bands(grid, regions, 0)
    sizes = [last - first + 1 for first, last in plain]
    assert plain[0][0] == 0 and plain[-1][1] == grid - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(plain, plain[1:]))  # contiguous, no overlap
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    widened = region_bands(grid, regions, 2)
    for (f0, l0), (f1, l1) in zip(plain, widened):
        assert f1 == max(0, f0 - 1) and l1 == min(grid - 1, l0 + 1)
    layout = region_layout(grid, regions, 2, 3)
    assert layout.length == (regions + 1) * 4 + grid * grid


def _reference_mask(layout):
    """The rule of docs/method.md §2, written token by token."""
    owner = {}  # token index -> region group j >= 1
    for j in range(1, layout.num_regions + 1):
        owner[layout.class_token_indices()[j]] = j
        for i in layout.prompt_indices(j):
            owner[i] = j
    region_patches = {j: set(layout.region_patch_indices(j)) for j in range(1, layout.num_regions + 1)}
    mask = torch.zeros(layout.length, layout.length, dtype=torch.bool)
    for q in range(layout.length):
        for k in range(layout.length):
            if q not in owner:
                mask[q, k] = True
            else:
                j = owner[q]
                mask[q, k] = owner.get(k) == j or k in region_patches[j]
    return mask


@pytest.mark.parametrize("grid,regions,overlap,prompts", [(8, 4, 2, 2), (7, 3, 1, 3), (6, 2, 0, 1), (5, 0, 2, 2)])
def test_mask_matches_the_rule(grid, regions, overlap, prompts):
    layout = region_layout(grid, regions, overlap, prompts)
    assert torch.equal(layout.mask, _reference_mask(layout))


def test_group_tokens_see_their_own_region_only():
    layout = region_layout(16, 4, 2, 10)
    cls_2 = layout.class_token_indices()[2]
    visible = layout.mask[cls_2].nonzero().flatten().tolist()
    expected = list(range(2 * 11, 3 * 11)) + layout.region_patch_indices(2)
    assert visible == expected
    assert layout.mask[0].all()  # CLS sees everything
    assert layout.mask[layout.patch_offset].all()  # a patch sees everything


def test_no_regions_is_plain_vpt():
    layout = region_layout(16, 0, 2, 10)
    assert layout.region_rows == [] and layout.length == 11 + 256 and layout.mask.all()


@pytest.mark.parametrize(
    "args,message",
    [
        ((3, 4, 2, 10), "does not fit a grid of 3 patch rows"),
        ((16, 4, 2, 0), "prompts_per_group must be positive"),
        ((16, 4, -1, 10), "overlap_rows"),
        ((0, 0, 0, 1), "grid_size"),
    ],
)
def test_bad_layouts_raise(args, message):
    with pytest.raises(ValueError, match=message):
        region_layout(*args)
