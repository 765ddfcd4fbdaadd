"""``PromptPARProcessor``: the CLIP tokenizer and the PromptPAR image processor in one object.

As ``CLIPProcessor`` does for CLIP, the processor holds what turns raw inputs into model
inputs; the model holds none of it. Of the tokenizer the model needs only the token ids
of its attribute sentences, which its config records (``sentence_token_ids``); the
image processor turns images into ``pixel_values``.

``PromptPARProcessor.from_pretrained`` (and ``AutoProcessor.from_pretrained``) loads:

* a folder or Hub repository saved with ``processor.save_pretrained`` (the tokenizer
  files and ``processor_config.json``), or one saved before the processor existed
  (``preprocessor_config.json``);
* a CLIP checkpoint (e.g. ``openai/clip-vit-large-patch14``): its tokenizer, and its
  image processor's size, mean and std in a :class:`PromptPARImageProcessor`;
* a PromptPAR model folder without processor files: the tokenizer and image settings
  of the CLIP base its ``config.json`` names.

When the folder holds a PromptPAR ``config.json``, the processor is checked against it
before it is returned: its tokenizer must reproduce the sentences' token ids the config
records, and its image processor must resize to the CLIP's image size.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Optional, Union

from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from ..image_processing import PromptPARImageProcessor
from ..sentences import resolve_sentences
from ..fileio import read_json_object
from . import loading
from ..saved_files import CONFIG_FILE, PREPROCESSOR_FILE, PROCESSOR_FILE, PROCESSOR_FILES

__all__ = ["PromptPARProcessor", "sentence_token_ids"]

STAGING_NAME = "promptpar-processor-save"
#: Arguments that ``pipeline()`` and ``AutoProcessor`` pass to every component they load;
#: they concern the model, not the processor.
MODEL_LOADING_ARGUMENTS = {"trust_remote_code", "dtype", "torch_dtype", "device_map", "attn_implementation",
                           "low_cpu_mem_usage", "use_safetensors", "code_revision", "fusion_name_or_path",
                           "use_fast"}
#: Download arguments the processor honours for every file it fetches.
DOWNLOAD_ARGUMENTS = ("force_download", "proxies")


def sentence_token_ids(tokenizer, sentences) -> list[list[int]]:
    """The token ids of each sentence, unpadded (``[SOT, tokens..., EOT]``): what
    ``PromptPARConfig.sentence_token_ids`` records."""
    encoded = tokenizer(list(sentences), padding=False, truncation=False)["input_ids"]
    return [[int(i) for i in ids] for ids in encoded]


def _locate(source: str, name: str, located: dict[str, Any]) -> Optional[Path]:
    """The local path of the file ``name`` of a folder or Hub repository (downloaded or
    from the cache), or None when it has none."""
    from transformers.utils import cached_file

    path = cached_file(source, name, _raise_exceptions_for_missing_entries=False,
                       _raise_exceptions_for_connection_errors=False, **located)
    return Path(path) if path is not None else None


class _Sources:
    """Where a processor's parts come from: the folder (or Hub repository) asked for,
    the PromptPAR config.json it holds (if any), and the CLIP base that config names."""

    def __init__(self, source: str, located: dict[str, Any], config, model_dir: Optional[Path],
                 base: Optional[str], base_hub: dict[str, Any], model_type: Optional[str] = None) -> None:
        self.source, self.located, self.config, self.model_dir = source, located, config, model_dir
        self.base, self.base_hub, self.model_type = base, base_hub, model_type

    @classmethod
    def find(cls, name_or_path, subfolder: str, revision: Optional[str], cache_dir: Optional[str],
             token: Union[None, bool, str], local_files_only: bool, clip_name_or_path: Optional[str],
             download: Optional[dict[str, Any]] = None) -> "_Sources":
        source = str(name_or_path)
        loading.check_not_a_missing_path(source)
        hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only, **(download or {}))
        located = dict(hub, revision=revision, subfolder=subfolder or "")
        config, model_dir, model_type = None, None, None
        path = _locate(source, CONFIG_FILE, located)
        if path is not None:
            raw = read_json_object(path)
            model_type = raw.get("model_type") if raw is not None else None
            if raw is None or model_type == "prompt_par":  # a broken config.json is named by read_config
                from .serialization import read_config

                config, model_dir = read_config(path.parent), path.parent
        base = clip_name_or_path
        if base is None and config is not None:
            base = loading.resolve_reference(config.clip_name_or_path, model_dir)
        base_revision = None if clip_name_or_path is not None or config is None else config.clip_revision
        return cls(source, located, config, model_dir, base, dict(hub, revision=base_revision), model_type)

    def path(self, name: str) -> Optional[Path]:
        return _locate(self.source, name, self.located)

    def has(self, name: str) -> bool:
        return self.path(name) is not None

    def token_hint(self, in_folder: bool) -> str:
        """What to do when the tokenizer does not reproduce the config's token ids."""
        if in_folder and not self.has("tokenizer.json"):
            return (f"{self.model_dir} has no tokenizer.json (a partial download?): download the model again, or "
                    "copy the tokenizer files of its CLIP base into the folder.")
        if in_folder:
            return f"The tokenizer files in {self.model_dir} do not belong to this model: download or save it again."
        return (f"{self.model_dir} has no tokenizer files, and the tokenizer of the CLIP base {self.base!r} is not "
                "the one the model was saved with: pass clip_name_or_path= the right base, or save the model's "
                "processor into the folder.")


class PromptPARProcessor(ProcessorMixin):
    r"""
    Constructs a PromptPAR processor, which wraps a [`PromptPARImageProcessor`] and a CLIP tokenizer into a single
    processor.

    Args:
        image_processor ([`PromptPARImageProcessor`]):
            Turns images into `pixel_values`: pad to a centred square, resize, normalise.
        tokenizer ([`CLIPTokenizer`]):
            The tokenizer of the CLIP base; it tokenizes the attribute sentences (see [`sentence_token_ids`]).
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs: Any) -> None:
        if not isinstance(image_processor, PromptPARImageProcessor):
            raise TypeError(
                f"image_processor must be a PromptPARImageProcessor, got {type(image_processor).__name__}; convert a "
                "CLIP image processor with PromptPARImageProcessor.from_clip_processor(...)."
            )
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(self, images: Any = None, text: Any = None, return_tensors: Optional[str] = "pt",
                 **kwargs: Any) -> BatchFeature:
        """``pixel_values`` of ``images`` (see :class:`PromptPARImageProcessor`) and / or the
        tokenizer's ``input_ids`` and ``attention_mask`` of ``text`` (padded to the longest;
        ``kwargs`` go to the tokenizer). The image settings are the image processor's own and
        are not changed per call: an image setting given here is an error, never ignored."""
        if images is None and text is None:
            raise ValueError("Give images, text or both.")
        image_settings = sorted(set(kwargs) & set(inspect.signature(type(self.image_processor).__init__).parameters))
        if image_settings:
            raise TypeError(f"{', '.join(image_settings)}: image settings are not changed per call; set them on "
                            "processor.image_processor (or save the processor with them).")
        data: dict[str, Any] = {}
        if text is not None:
            data.update(self.tokenizer(text, padding=kwargs.pop("padding", True), return_tensors=return_tensors,
                                       **kwargs))
        elif kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)}")
        if images is not None:
            data.update(self.image_processor(images, return_tensors=return_tensors))
        return BatchFeature(data=data)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values"]

    def sentence_token_ids(self, sentences) -> list[list[int]]:
        """The token ids of ``sentences`` as ``PromptPARConfig.sentence_token_ids``
        records them (see :func:`sentence_token_ids`)."""
        return sentence_token_ids(self.tokenizer, sentences)

    # ------------------------------------------------------------------ checks
    def check_image_size(self, config, source: str = "the image processor", fix_in: str = PROCESSOR_FILE) -> None:
        """ValueError unless the image processor's settings are valid and resize to the
        image size of the CLIP that ``config`` (a PromptPARConfig) describes."""
        self.image_processor.validate()
        size, image_size = self.image_processor.size, config.get_clip_config().vision_config.image_size
        if size != image_size:
            raise ValueError(
                f"{source} resizes images to {size}x{size} pixels, but the CLIP takes {image_size}x{image_size} "
                f"images; set \"size\": {image_size} in {fix_in}."
            )

    def check_token_ids(self, config, hint: str = "The tokenizer does not belong to this model.") -> None:
        """ValueError unless the tokenizer reproduces the sentences' token ids that
        ``config`` records (configs without them are not checked); ``hint`` says what to do."""
        expected = config.sentence_token_ids
        if expected is None:
            return
        sentences = resolve_sentences(config.attributes, config.sentences, config.dataset)
        try:
            found = self.sentence_token_ids(sentences)
        except (TypeError, ValueError, KeyError) as error:
            found = [[f"error: {error}"]] * len(sentences)
        for index, (sentence, want, got) in enumerate(zip(sentences, expected, found)):
            if want != got:
                raise ValueError(
                    f"The tokenizer does not reproduce the token ids config.json records for sentence {index} "
                    f"{sentence!r}: {got[:12]} instead of {want[:12]}. {hint}"
                )

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *,
        subfolder: str = "",
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        clip_name_or_path: Optional[str] = None,
        **kwargs: Any,
    ) -> "PromptPARProcessor":
        """Load a processor from a folder or Hub repository (see the module docstring).

        ``clip_name_or_path``: for a PromptPAR model folder without processor files,
        the CLIP to take the tokenizer and image settings from instead of the base its
        ``config.json`` names. The folder's ``config.json``, when it is a PromptPAR one,
        is checked against the processor: ValueError naming the problem and the fix.
        """
        download = {key: kwargs.pop(key) for key in DOWNLOAD_ARGUMENTS if kwargs.get(key)}
        for key in list(kwargs):  # passed along by AutoProcessor and pipeline(); not the processor's business
            if key.startswith("_") or key in MODEL_LOADING_ARGUMENTS or key in DOWNLOAD_ARGUMENTS:
                kwargs.pop(key)
        if kwargs:
            raise TypeError(f"PromptPARProcessor.from_pretrained got unexpected arguments: {sorted(kwargs)}")
        where = _Sources.find(pretrained_model_name_or_path, subfolder, revision, cache_dir, token, local_files_only,
                              clip_name_or_path, download)
        tokenizer, in_folder = cls._load_tokenizer(where)
        image_processor, image_source, fix_in = cls._load_image_processor(where)
        processor = cls(image_processor=image_processor, tokenizer=tokenizer)
        if where.config is not None:
            processor.check_image_size(where.config, image_source, fix_in)
            processor.check_token_ids(where.config, where.token_hint(in_folder))
        return processor

    @classmethod
    def load_tokenizer(
        cls,
        pretrained_model_name_or_path: Union[str, os.PathLike],
        *,
        subfolder: str = "",
        revision: Optional[str] = None,
        cache_dir: Optional[str] = None,
        token: Union[None, bool, str] = None,
        local_files_only: bool = False,
        clip_name_or_path: Optional[str] = None,
    ):
        """The tokenizer alone, found as :meth:`from_pretrained` finds it (not checked)."""
        where = _Sources.find(pretrained_model_name_or_path, subfolder, revision, cache_dir, token, local_files_only,
                              clip_name_or_path)
        return cls._load_tokenizer(where)[0]

    @staticmethod
    def _load_tokenizer(where: "_Sources"):
        """``(tokenizer, whether it is the folder's own)``: the folder's, else its CLIP base's."""
        from transformers import AutoTokenizer

        in_folder = where.has("tokenizer_config.json")
        reference, hub = (where.source, where.located) if in_folder else (where.base, where.base_hub)
        if reference is None and where.config is None:
            found = f"holds a {where.model_type!r} model" if where.model_type else "has no config.json"
            raise OSError(f"{where.source} {found} and no tokenizer files: it is neither a PromptPAR model folder nor "
                          "a CLIP checkpoint; give a folder saved with save_pretrained, or a CLIP checkpoint.")
        if reference is None:
            raise OSError(f"{where.source} holds no tokenizer files and names no CLIP base to take the tokenizer "
                          "from; save the model's processor into it (PromptPARProcessor.save_pretrained).")
        try:
            return AutoTokenizer.from_pretrained(reference, **hub), in_folder
        except (OSError, ValueError, TypeError, KeyError) as error:
            if in_folder:
                raise ValueError(f"The tokenizer files in {where.source} could not be loaded ({error}); download or "
                                 "save the model again.") from error
            raise loading.MissingBaseModelError(
                f"The tokenizer of the CLIP base {reference!r} could not be loaded: {error}"
            ) from error

    @staticmethod
    def _load_image_processor(where: "_Sources"):
        """``(image processor, where it came from, the file to fix its size in)``: the
        folder's own (a PromptPAR one as saved, a CLIP one converted), else one made
        from the CLIP base's."""
        from transformers import AutoImageProcessor
        from transformers.image_processing_base import ImageProcessingMixin

        source = where.source
        try:
            settings, _ = ImageProcessingMixin.get_image_processor_dict(source, **where.located)
        except OSError:
            settings = None
        if settings is not None and settings.get("image_processor_type") == PromptPARImageProcessor.__name__:
            nested = where.has(PROCESSOR_FILE) and "image_processor" in (read_json_object(where.path(PROCESSOR_FILE)) or {})
            name = PROCESSOR_FILE if nested else PREPROCESSOR_FILE
            try:
                return PromptPARImageProcessor.from_dict(settings), f"{name} of {source}", name
            except (TypeError, ValueError) as error:
                raise ValueError(f"the image processor config ({name}) of {source!r} is invalid: {error}. Fix the "
                                 "file, or save the model again.") from error
        if settings is None and getattr(where.config, "imported_from", None):
            # A model imported from an official checkpoint and saved without its processor: its
            # images go through the official pipeline, not through its CLIP base's.
            from ..official.importer import official_image_processor

            size = where.config.get_clip_config().vision_config.image_size
            return (official_image_processor(size), "the official PromptPAR image pipeline (the model was imported "
                    "from an official checkpoint)", PROCESSOR_FILE)
        reference, hub = (source, where.located) if settings is not None else (where.base, where.base_hub)
        if reference is None:
            raise OSError(f"{source} holds no image processor and names no CLIP base to take one from; give a folder "
                          "saved with PromptPARProcessor.save_pretrained, or a CLIP checkpoint.")
        try:
            clip_processor = AutoImageProcessor.from_pretrained(reference, **hub)
        except (OSError, ValueError) as error:
            raise loading.MissingBaseModelError(
                f"The image processor of {reference!r} could not be loaded: {error}") from error
        kind = "CLIP" if settings is not None else "CLIP base"
        return (PromptPARImageProcessor.from_clip_processor(clip_processor),
                f"the image processor of the {kind} {reference!r}", PROCESSOR_FILE)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False,
                        **kwargs: Any) -> list[str]:
        """Write the tokenizer files and ``processor_config.json`` into ``save_directory``.

        As ``PromptPARModel.save_pretrained``: each file is written to a hidden staging
        folder, then moved into place atomically; files of an earlier PromptPAR
        processor there that this save does not write are removed; a folder holding
        files of anything else is refused (nothing is overwritten). Other files are
        left alone.
        """
        from ..fileio import staging_directory
        from .serialization import publish_saved_files

        directory = Path(save_directory).absolute()
        with staging_directory(directory, STAGING_NAME) as staging:
            super().save_pretrained(staging)
            written = sorted(path.relative_to(staging).as_posix() for path in staging.rglob("*") if path.is_file())
            publish_saved_files(staging, directory, written, PROCESSOR_FILES, last=PROCESSOR_FILE)
        if push_to_hub:
            repo_id = kwargs.pop("repo_id", directory.name)
            self.push_to_hub(repo_id, **kwargs)
        return [str(directory / name) for name in written]
