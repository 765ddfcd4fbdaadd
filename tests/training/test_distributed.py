"""SyncBatchNorm1d: plain BatchNorm in one process, global-batch statistics across processes."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from par_prompt.training import SyncBatchNorm1d, convert_sync_batchnorm, revert_sync_batchnorm


def _batchnorm_pair(features=5, seed=0):
    torch.manual_seed(seed)
    plain = torch.nn.BatchNorm1d(features)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-0.5, 0.5)
    sync = SyncBatchNorm1d(features)
    sync.load_state_dict(plain.state_dict())
    return plain, sync


def test_single_process_matches_plain_batchnorm():
    plain, sync = _batchnorm_pair()
    x = torch.randn(6, 5, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(6, 5)
    expected, got = plain(x), sync(y)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    (expected * upstream).sum().backward()
    (got * upstream).sum().backward()
    torch.testing.assert_close(y.grad, x.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sync.weight.grad, plain.weight.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sync.running_mean, plain.running_mean, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(sync.running_var, plain.running_var, atol=1e-7, rtol=1e-6)
    assert int(sync.num_batches_tracked) == int(plain.num_batches_tracked) == 1
    sync.eval(), plain.eval()
    assert torch.equal(sync(x.detach()), plain(x.detach()))  # eval: plain BatchNorm with the running statistics


def test_convert_keeps_the_same_parameters_and_state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    weight, running_mean = model[1].weight, model[1].running_mean
    assert convert_sync_batchnorm(model) == 1
    assert type(model[1]) is SyncBatchNorm1d
    assert model[1].weight is weight and model[1].running_mean is running_mean
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                       "1.running_var", "1.num_batches_tracked"}
    assert revert_sync_batchnorm(model) == 1 and type(model[1]) is torch.nn.BatchNorm1d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, x, upstream, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        _, sync = _batchnorm_pair()
        shard = x.chunk(world)[rank].clone().requires_grad_(True)
        # each process's loss is its shard's share of the global loss, as with DDP's averaging
        loss = (sync(shard) * upstream.chunk(world)[rank]).sum() / world
        loss.backward()
        grads = [torch.zeros_like(shard.grad) for _ in range(world)]
        dist.all_gather(grads, shard.grad)
        weight_grad = sync.weight.grad.clone()
        dist.all_reduce(weight_grad)
        if rank == 0:
            torch.save((torch.cat(grads), weight_grad, sync.running_mean.clone(), sync.running_var.clone()), out_path)
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1)) * 3 + 1
    upstream = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    plain, _ = _batchnorm_pair()
    xg = x.clone().requires_grad_(True)
    ((plain(xg) * upstream).sum() / 2).backward()  # the two processes' losses above, summed

    out_path = tmp_path / "rank0.pt"
    mp.start_processes(_worker, args=(2, _free_port(), x, upstream, str(out_path)), nprocs=2, join=True,
                       start_method="fork")
    grads, weight_grad, running_mean, running_var = torch.load(out_path)
    torch.testing.assert_close(grads, xg.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weight_grad, plain.weight.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(running_mean, plain.running_mean, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(running_var, plain.running_var, atol=1e-7, rtol=1e-6)
