"""The PeftType workaround and the registration are idempotent and complete."""

import subprocess
import sys

from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_PREFIX_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType

import par_prompt
from par_prompt.tuner.registry import ensure_peft_type_member, register_region_prompt_method


def test_member_behaves_like_the_built_in_ones():
    member = ensure_peft_type_member()
    assert member is PeftType.REGION_PROMPT is PeftType["REGION_PROMPT"] is PeftType("REGION_PROMPT")
    assert member == "REGION_PROMPT" and isinstance(member, str) and member.value == "REGION_PROMPT"
    assert list(PeftType).count(member) == 1
    assert ensure_peft_type_member() is member


def test_registration_maps_the_classes():
    peft_type = PeftType.REGION_PROMPT
    assert PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] is par_prompt.RegionPromptConfig
    assert PEFT_TYPE_TO_TUNER_MAPPING[peft_type] is par_prompt.RegionPromptModel
    assert PEFT_TYPE_TO_PREFIX_MAPPING[peft_type] == "region_prompt_"
    assert register_region_prompt_method() is peft_type  # again: no error, no change
    assert PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] is par_prompt.RegionPromptConfig


def test_config_round_trips_through_peft(tmp_path):
    config = par_prompt.RegionPromptConfig(num_regions=3, text_prompts=0)
    config.save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, par_prompt.RegionPromptConfig)
    assert loaded.num_regions == 3 and loaded.text_prompts == 0 and loaded.peft_type == "REGION_PROMPT"


def test_importing_twice_and_reloading_is_harmless():
    code = (
        "import importlib, par_prompt, par_prompt.tuner.registry as r;"
        "importlib.reload(r); importlib.reload(par_prompt); import par_prompt;"
        "from peft.utils import PeftType; assert list(PeftType).count(PeftType.REGION_PROMPT) == 1;"
        "from peft import get_peft_model; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
