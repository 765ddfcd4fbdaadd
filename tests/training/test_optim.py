"""The paper's optimiser groups and the warm-up cosine schedule (docs/method.md §8)."""

import math

import pytest
import torch

from par_prompt.training import WarmupCosineSchedule, build_optimizer, warmup_cosine_factor


def test_schedule_values_by_hand():
    # 2 warm-up steps out of 6, starting at 1 % of the lr
    factors = [warmup_cosine_factor(s, warmup_steps=2, total_steps=6, start_factor=0.01) for s in range(7)]
    expected = [0.01, 0.505, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    assert factors == pytest.approx(expected, abs=1e-12)


def test_schedule_steps_once_per_update_and_round_trips():
    param = torch.nn.Parameter(torch.zeros(()))
    optimizer = torch.optim.SGD([{"params": [param], "lr": 8e-3}], lr=8e-3, momentum=0.9)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=10, total_steps=40, start_factor=0.01)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(8e-5)  # 0.01 × lr
    assert lrs[5] == pytest.approx(8e-3 * (0.01 + 0.99 * 5 / 10))
    assert lrs[10] == pytest.approx(8e-3)
    assert lrs[11] == pytest.approx(8e-3 * (1 + math.cos(math.pi / 30)) / 2)

    other = WarmupCosineSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=8e-3), 10, 40)
    other.load_state_dict(schedule.state_dict())
    assert other.last_epoch == schedule.last_epoch == 12
    assert other.get_last_lr() == pytest.approx(schedule.get_last_lr())


@pytest.mark.parametrize("kwargs", [dict(warmup_steps=5, total_steps=4), dict(warmup_steps=-1, total_steps=4),
                                    dict(warmup_steps=0, total_steps=0)])
def test_schedule_rejects_bad_lengths(kwargs):
    with pytest.raises(ValueError):
        warmup_cosine_factor(0, **kwargs)


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.prompt = torch.nn.Parameter(torch.zeros(3))
        self.head = torch.nn.Linear(2, 2)
        self.frozen = torch.nn.Linear(2, 2).requires_grad_(False)

    def prompt_parameters(self):
        return [self.prompt]

    def head_parameters(self):
        return list(self.head.parameters())


def test_optimizer_has_the_paper_groups():
    model = _Toy()
    optimizer = build_optimizer(model)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["prompts"]["lr"] == 4e-3 and groups["head"]["lr"] == 8e-3
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in optimizer.param_groups)
    assert groups["prompts"]["params"] == [model.prompt]
    assert len(groups["head"]["params"]) == 2


def test_optimizer_refuses_a_trainable_parameter_outside_the_groups():
    model = _Toy()
    model.frozen.requires_grad_(True)
    with pytest.raises(ValueError, match="outside the prompt and head groups"):
        build_optimizer(model)


def test_prompt_init_choices_are_the_ones_the_method_accepts():
    import typing

    from par_prompt.training import ModelArguments
    from par_prompt.tuner.config import PROMPT_INITS

    choices = typing.get_args(typing.get_type_hints(ModelArguments)["prompt_init"])
    assert set(choices) == set(PROMPT_INITS)
