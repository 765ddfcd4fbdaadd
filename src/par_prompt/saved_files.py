"""The files of a saved PromptPAR model folder, by name (a leaf module: it imports nothing).

Every module that writes, reads, uploads or lists a model folder takes the names from
here (serialization, the processor, the Hub upload), so they cannot drift apart::

    config.json                            PromptPARConfig            (PromptPARModel.save_pretrained)
    clip_adapter/adapter_config.json       the CLIP prompts as a PEFT adapter
    clip_adapter/adapter_model.safetensors
    promptpar_head.safetensors             projections, fusion norm, heads, statistics
    clip_base.safetensors                  the CLIP itself, only when bundled
    processor_config.json                  PromptPARProcessor with its image processor
    tokenizer.json, tokenizer_config.json  the CLIP tokenizer      (PromptPARProcessor.save_pretrained)

``preprocessor_config.json`` holds the image processor of folders saved before the
processor existed; it still loads.
"""

from __future__ import annotations

CONFIG_FILE = "config.json"
ADAPTER_DIR = "clip_adapter"
ADAPTER_CONFIG_FILE = f"{ADAPTER_DIR}/adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILE = f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}"
#: What a pickled PEFT adapter would be called; never written, removed when stale.
LEGACY_ADAPTER_FILE = f"{ADAPTER_DIR}/adapter_model.bin"
HEAD_FILE = "promptpar_head.safetensors"
CLIP_BASE_FILE = "clip_base.safetensors"

PROCESSOR_FILE = "processor_config.json"
#: The image processor's own file (transformers' name); processors save it inside PROCESSOR_FILE.
PREPROCESSOR_FILE = "preprocessor_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja")

#: Files ``PromptPARModel.save_pretrained`` may write. When a later save into the same
#: folder does not write one of them again, it is removed (left there, it would load
#: with the new model).
MODEL_FILES = (CONFIG_FILE, HEAD_FILE, CLIP_BASE_FILE, ADAPTER_FILE, ADAPTER_CONFIG_FILE, LEGACY_ADAPTER_FILE)
#: Files ``PromptPARProcessor.save_pretrained`` may write (the same rule).
PROCESSOR_FILES = (PROCESSOR_FILE, PREPROCESSOR_FILE, *TOKENIZER_FILES)
#: Every file of a saved model folder (model and processor).
FOLDER_FILES = MODEL_FILES + PROCESSOR_FILES
#: Files every saved PromptPAR model has.
REQUIRED_FILES = (CONFIG_FILE, ADAPTER_FILE, HEAD_FILE)
#: Weight files a saved model may hold at its top level.
WEIGHT_FILES = (HEAD_FILE, CLIP_BASE_FILE)
#: Weight files whose presence changes how the model loads (absent unless bundled).
OPTIONAL_WEIGHT_FILES = (CLIP_BASE_FILE,)

#: The prefix of the prompted CLIP (a PeftModel) in PromptPARModel's state dict; the
#: head file holds every tensor outside it. Before the attribute was named
#: ``peft_clip`` it was ``clip``: training checkpoints of that time use LEGACY_CLIP_PREFIX.
CLIP_STATE_PREFIX = "peft_clip."
LEGACY_CLIP_PREFIX = "clip."
FUSION_LAYERS_PREFIX = "fusion.layers."
