"""Cross-process BatchNorm, so data-parallel training equals single-process training.

PromptPAR's heads end in ``BatchNorm1d`` over the batch (docs/method.md §4-§5). Under data
parallelism each process sees only its shard of the global batch, so plain BatchNorm
would normalise with per-shard statistics and the result would depend on the number of
processes. ``torch.nn.SyncBatchNorm`` fixes that on GPUs only: in torch 2.13 it raises
for CPU tensors ("SyncBatchNorm expected input tensor to be on GPU ..."), so gloo/CPU
runs could not use it. :class:`SyncBatchNorm1d` works on any device and backend:

- training mode, ``torch.distributed`` initialised with more than one process: the mean
  and the (biased) variance are computed over the **global** batch with two
  ``all_reduce`` calls (sums and counts, then squared deviations from the global mean),
  differentiably; the running statistics are updated with the global mean and the
  unbiased global variance, exactly as one process holding the whole batch would;
- training mode in a single process: the same computation without the all-reduce
  (numerically equal to ``BatchNorm1d`` up to rounding, but with the very same
  operations as the distributed case, so that one process and ``P`` processes round
  alike);
- eval mode: plain ``BatchNorm1d`` with the running statistics.

The gradient: the all-reduce's backward all-reduces the incoming gradients (sum), so
each process receives the derivative of the *sum* of all processes' losses with respect
to the shared statistics. DDP then averages parameter gradients over the processes,
which yields the gradient of the mean loss, i.e. of the single-process loss on the
global batch when the shards are equal in size.

The module is a subclass of ``BatchNorm1d`` with the same parameters and buffers, so
state dicts, ``save_pretrained`` and ``isinstance`` checks are unaffected.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["SyncBatchNorm1d", "convert_sync_batchnorm", "revert_sync_batchnorm"]


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over processes: forward all-reduces the input, backward the gradient."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def _distributed_world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SyncBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training-mode statistics span every process (see the module docstring).

    Input (B, C) or (B, C, L), as ``BatchNorm1d``. Requires ``affine`` and
    ``track_running_stats`` to be as in the module it replaces (both are copied).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.track_running_stats:
            return super().forward(input)
        self._check_input_dim(input)
        distributed = _distributed_world() > 1
        reduce = _AllReduceSum.apply if distributed else (lambda t: t)
        dtype = input.dtype
        x = input.float()
        # (B, C) or (B, C, L): reduce over every axis except the channels
        dims = [0] + list(range(2, x.dim()))
        local_count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float32, device=x.device)
        sums = reduce(torch.cat([x.sum(dim=dims), local_count]))
        count = sums[-1].detach()
        if float(count) < 2:
            raise ValueError("SyncBatchNorm1d needs at least 2 values per channel over all processes in training.")
        mean = sums[:-1] / count
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = reduce((centred * centred).sum(dim=dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.float().view(shape) + self.bias.float().view(shape)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
            unbiased = var.detach() * (count / (count - 1))
            self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        return out.to(dtype)


def _swap(module: nn.Module, target: type) -> nn.Module:
    new = target(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                 device=module.running_mean.device if module.running_mean is not None else None)
    new.train(module.training)
    if module.affine:
        new.weight, new.bias = module.weight, module.bias  # same Parameter objects: optimizer groups stay valid
    if module.track_running_stats:
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
    return new


def convert_sync_batchnorm(model: nn.Module) -> int:
    """Replace every plain ``BatchNorm1d`` in ``model`` by :class:`SyncBatchNorm1d`, in place.

    The parameters and buffers are the very same tensors (an optimizer built before the
    conversion keeps working). Returns the number of modules replaced.
    """
    return _replace(model, lambda m: type(m) is nn.BatchNorm1d, SyncBatchNorm1d)


def revert_sync_batchnorm(model: nn.Module) -> int:
    """Undo :func:`convert_sync_batchnorm` (back to plain ``BatchNorm1d``), in place."""
    return _replace(model, lambda m: type(m) is SyncBatchNorm1d, nn.BatchNorm1d)


def _replace(model: nn.Module, match, target: type) -> int:
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, _swap(child, target))
                count += 1
    return count
