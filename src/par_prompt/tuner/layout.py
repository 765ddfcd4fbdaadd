"""Token layout and attention mask of the region-aware visual prompts (docs/method.md §2).

The sequence that enters the first encoder layer is::

    [CLS, P_g(m), CLS_1, P_1(m), ..., CLS_K, P_K(m), patch_1 ... patch_{G*G}]

``CLS`` and the ``m`` global prompts ``P_g`` form group 0; region ``j`` (1-based) owns
group ``j``: its class token ``CLS_j`` followed by its ``m`` prompts. The patches follow
in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RegionLayout:
    """Where every token of the prompted vision sequence sits, and who may attend to whom.

    Attributes:
        grid_size: patches per side, G.
        num_regions: K; 0 means global prompts only (plain VPT).
        overlap_rows: o, the rows each band is widened by (half above, half below).
        prompts_per_group: m.
        region_rows: one inclusive ``(first_row, last_row)`` pair per region.
        length: L = (K + 1) * (m + 1) + G * G.
        group_size: m + 1 tokens per group (a class token and its prompts).
        patch_offset: index of the first patch token, (K + 1) * (m + 1).
        mask: bool (L, L); ``mask[q, k]`` is True where query ``q`` may attend key ``k``.
    """

    grid_size: int
    num_regions: int
    overlap_rows: int
    prompts_per_group: int
    region_rows: list[tuple[int, int]]
    length: int
    group_size: int
    patch_offset: int
    mask: torch.Tensor

    @property
    def num_groups(self) -> int:
        return self.num_regions + 1

    def class_token_indices(self) -> list[int]:
        """Indices of CLS, CLS_1, ..., CLS_K in the sequence."""
        return [g * self.group_size for g in range(self.num_groups)]

    def prompt_indices(self, group: int) -> list[int]:
        """Indices of the prompts of ``group`` (0 = global, j = region j)."""
        start = group * self.group_size + 1
        return list(range(start, start + self.prompts_per_group))

    def region_patch_indices(self, region: int) -> list[int]:
        """Sequence indices of the patches of ``region`` (1-based)."""
        first, last = self.region_rows[region - 1]
        g = self.grid_size
        return list(range(self.patch_offset + first * g, self.patch_offset + (last + 1) * g))


def region_bands(grid_size: int, num_regions: int, overlap_rows: int) -> list[tuple[int, int]]:
    """Cut ``grid_size`` rows into ``num_regions`` bands, then widen each band.

    Rule:
      1. Base bands: ``G // K`` rows each, the first ``G % K`` bands get one extra row
         (so for G=14, K=4 the bands have 4, 4, 3, 3 rows).
      2. Widen every band by ``overlap_rows // 2`` rows upwards and
         ``overlap_rows - overlap_rows // 2`` rows downwards (for odd overlaps the extra
         row goes down), clipped to ``[0, G - 1]``.

    For G=16, K=4, o=2 this gives rows 0-4, 3-8, 7-12 and 11-15.

    Returns a list of inclusive ``(first_row, last_row)`` pairs.
    """
    if grid_size < 1:
        raise ValueError(f"grid_size must be at least 1, got {grid_size}.")
    if num_regions < 0:
        raise ValueError(f"num_regions must be 0 or more, got {num_regions}.")
    if num_regions > grid_size:
        raise ValueError(
            f"num_regions={num_regions} does not fit a grid of {grid_size} patch rows: every region needs at "
            f"least one row. Use num_regions <= {grid_size}, or a larger image / smaller patch size."
        )
    if overlap_rows < 0:
        raise ValueError(f"overlap_rows must be 0 or more, got {overlap_rows}.")
    base, extra = divmod(grid_size, num_regions) if num_regions else (0, 0)
    up, down = overlap_rows // 2, overlap_rows - overlap_rows // 2
    bands, start = [], 0
    for j in range(num_regions):
        rows = base + (1 if j < extra else 0)
        first, last = start, start + rows - 1
        bands.append((max(0, first - up), min(grid_size - 1, last + down)))
        start += rows
    return bands


def region_layout(grid_size: int, num_regions: int, overlap_rows: int, prompts_per_group: int) -> RegionLayout:
    """Build the :class:`RegionLayout` for a G x G patch grid.

    The mask follows docs/method.md §2: a token of region group j (``CLS_j`` or a prompt of
    ``P_j``) attends only to the tokens of group j and to the patches of region j; every
    other token (CLS, the global prompts, the patches) attends to everything.

    Pure function: no state, no caching (the tuner layer caches the mask it derives).
    """
    if prompts_per_group < 0:
        raise ValueError(f"prompts_per_group must be 0 or more, got {prompts_per_group}.")
    if num_regions > 0 and prompts_per_group <= 0:
        raise ValueError(
            f"prompts_per_group must be positive when num_regions > 0 (got prompts_per_group={prompts_per_group}, "
            f"num_regions={num_regions}): every region needs its own prompts. Set num_regions=0 for no region prompts."
        )
    bands = region_bands(grid_size, num_regions, overlap_rows)
    group_size = prompts_per_group + 1
    patch_offset = (num_regions + 1) * group_size
    length = patch_offset + grid_size * grid_size

    mask = torch.ones(length, length, dtype=torch.bool)
    for j, (first, last) in enumerate(bands, start=1):
        group = slice(j * group_size, (j + 1) * group_size)
        patches = slice(patch_offset + first * grid_size, patch_offset + (last + 1) * grid_size)
        mask[group] = False
        mask[group, group] = True
        mask[group, patches] = True
    return RegionLayout(
        grid_size=grid_size,
        num_regions=num_regions,
        overlap_rows=overlap_rows,
        prompts_per_group=prompts_per_group,
        region_rows=bands,
        length=length,
        group_size=group_size,
        patch_offset=patch_offset,
        mask=mask,
    )
