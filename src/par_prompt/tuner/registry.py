"""Registration of the region-prompt method with PEFT.

peft's ``register_peft_method`` only accepts names that already exist in the
``PeftType`` enum, and enums cannot be extended through their public API. This module
holds the one workaround the package needs: add a ``REGION_PROMPT`` member to
``PeftType`` (built the way ``enum`` builds its own members), then register the config
and tuner classes. Both steps are idempotent, so importing the package twice, or
reloading it, is harmless.
"""

from __future__ import annotations

from peft.utils.peft_types import PeftType

PEFT_TYPE_NAME = "REGION_PROMPT"


def ensure_peft_type_member(name: str = PEFT_TYPE_NAME) -> PeftType:
    """Return ``PeftType[name]``, adding the member to the enum first if it is missing.

    The new member is a ``str`` instance of ``PeftType`` whose value equals its name, like
    every other member, so that it compares, hashes and serialises (``json``) as the plain
    string ``name``. It is entered in the enum's name and value maps and in its iteration
    order, which is what ``PeftType[name]``, ``PeftType(name)``, ``list(PeftType)`` and
    peft's mappings rely on.
    """
    if name in PeftType.__members__:
        return PeftType[name]
    if name != name.upper() or not name.isidentifier():
        raise ValueError(f"A PEFT type name must be an upper-case identifier, got {name!r}.")

    member = str.__new__(PeftType, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = PeftType
    if hasattr(member, "_sort_order_"):
        member._sort_order_ = len(PeftType._member_names_)
    # Python >= 3.11 iterates over ``_member_names_``; older versions and 3.12's value map
    # are kept in step as well.
    PeftType._member_names_.append(name)
    PeftType._member_map_[name] = member
    PeftType._value2member_map_[name] = member
    type.__setattr__(PeftType, name, member)
    return member


def register_region_prompt_method() -> PeftType:
    """Make ``REGION_PROMPT`` a PEFT method: config class, tuner class and state-dict prefix.

    Safe to call any number of times: a second call finds the entries in place and does
    nothing. If another package registered different classes under the same type, the
    error says so instead of silently replacing them.
    """
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    from .config import RegionPromptConfig
    from .model import RegionPromptModel

    peft_type = ensure_peft_type_member()
    known_config = PEFT_TYPE_TO_CONFIG_MAPPING.get(peft_type)
    if known_config is None:
        register_peft_method(
            name=PEFT_TYPE_NAME.lower(), config_cls=RegionPromptConfig, model_cls=RegionPromptModel,
            prefix=RegionPromptModel.prefix,
        )
    elif (known_config.__qualname__, PEFT_TYPE_TO_TUNER_MAPPING[peft_type].__qualname__) != (
        RegionPromptConfig.__qualname__, RegionPromptModel.__qualname__,
    ):
        raise RuntimeError(
            f"PEFT type {PEFT_TYPE_NAME} is already registered to {known_config.__module__}."
            f"{known_config.__qualname__}; par_prompt cannot register its own method under that name."
        )
    else:
        # Same classes (possibly from a reloaded module): point the mappings at the current ones.
        PEFT_TYPE_TO_CONFIG_MAPPING[peft_type] = RegionPromptConfig
        PEFT_TYPE_TO_TUNER_MAPPING[peft_type] = RegionPromptModel
    return peft_type
