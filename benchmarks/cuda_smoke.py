"""CUDA smoke test for par-prompt: the tiny model on a GPU, end to end.

Checks, on ``--device`` (default cuda): a forward and backward pass in fp32 and under
bf16 autocast, bf16 weights, eager vs sdpa agreement of the region-prompted vision
tower, the prompts-as-keys/values path against the full-sequence path, a compiled
(inductor) vision tower against the eager one, the text-feature cache, a gradient
forward after inference-mode forwards, gradient checkpointing, eval-mode results from a
model in training mode (``training=False``), and a save/load round trip that
reproduces the logits. Prints one line per
check and exits non-zero if one fails. Needs no network and no ``datasets``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)

    from par_prompt import PromptPARModel
    from par_prompt.tiny_backbones import write_tiny_backbones

    failures = []

    def check(name, ok, detail=""):
        print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)
        if not ok:
            failures.append(name)

    tmp = tempfile.mkdtemp()
    bb = write_tiny_backbones(tmp, image_size=64, patch_size=8, vision_width=64, vision_heads=4)
    attributes = ["Hat", "Glasses", "Backpack", "ShortSleeve", "Trousers", "Boots"]
    model = PromptPARModel.from_backbones(bb.clip, attributes, fusion_name_or_path=bb.vit).to(device)
    model.set_positive_ratios(torch.linspace(0.1, 0.6, len(attributes)))
    pixels = torch.randn(8, 3, 64, 64, device=device)
    labels = torch.randint(0, 2, (8, len(attributes)), device=device)

    model.train()
    out = model(pixels, labels=labels)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    check("fp32 forward/backward", torch.isfinite(out.loss).item() and all(g is not None for g in grads),
          f"loss={out.loss.item():.4f}")
    model.zero_grad()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = model(pixels, labels=labels)
    out.loss.backward()
    check("bf16 autocast forward/backward", torch.isfinite(out.loss).item(), f"loss={out.loss.item():.4f}")

    model.eval()
    tower = model.clip_model.vision_model
    with torch.no_grad():
        sdpa = tower(pixel_values=pixels).last_hidden_state
        model.clip_model.set_attn_implementation("eager")
        eager = tower(pixel_values=pixels).last_hidden_state
        model.clip_model.set_attn_implementation("sdpa")
    check("eager == sdpa (region mask)", torch.allclose(sdpa, eager, atol=1e-4, rtol=1e-4),
          f"max diff {(sdpa - eager).abs().max().item():.2e}")
    with torch.no_grad():  # recording hidden states runs every token through every layer
        full = tower(pixel_values=pixels, output_hidden_states=True).last_hidden_state
    check("prompts as keys/values == full sequence", torch.allclose(sdpa, full, atol=1e-4, rtol=1e-4),
          f"max diff {(sdpa - full).abs().max().item():.2e}")

    compiled = torch.compile(tower)
    with torch.no_grad():
        start = time.perf_counter()
        got = compiled(pixel_values=pixels).last_hidden_state
        seconds = time.perf_counter() - start
    check("torch.compile (inductor) vision tower", torch.allclose(got, sdpa, atol=1e-3, rtol=1e-3),
          f"max diff {(got - sdpa).abs().max().item():.2e}, first call {seconds:.1f}s")

    calls = []
    model.clip_model.text_model.register_forward_hook(lambda *a: calls.append(1))
    with torch.inference_mode():
        first = model(pixels).logits
        second = model(pixels).logits
    check("text features cached in eval", len(calls) == 1 and torch.equal(first, second), f"text runs={len(calls)}")

    model.train()  # caches filled under inference mode must serve autograd; checkpointing gives the same loss
    model.zero_grad()
    plain = model(pixels, labels=labels).loss
    plain.backward()
    model.gradient_checkpointing_enable()
    model.zero_grad()
    checkpointed = model(pixels, labels=labels).loss
    checkpointed.backward()
    model.gradient_checkpointing_disable()
    check("gradient forward after inference mode; gradient checkpointing", torch.allclose(plain, checkpointed),
          f"loss {plain.item():.5f} vs {checkpointed.item():.5f}")
    with torch.inference_mode():
        in_training_mode = model(pixels, training=False).logits
    still_training = model.training
    model.eval()
    with torch.inference_mode():
        in_eval_mode = model(pixels).logits
    difference = (in_training_mode - in_eval_mode).abs().max().item()
    check("training=False on a model in training mode", still_training and difference <= 1e-5,
          f"max diff {difference:.2e}")

    model.save_pretrained(f"{tmp}/saved")
    loaded = PromptPARModel.from_pretrained(f"{tmp}/saved", device=device)
    with torch.inference_mode():
        again = loaded(pixels).logits
    check("save/load round trip on GPU", torch.equal(again, in_eval_mode),
          f"max diff {(again - in_eval_mode).abs().max().item():.2e}")

    bf16 = PromptPARModel.from_pretrained(f"{tmp}/saved", device=device, dtype=torch.bfloat16)
    with torch.inference_mode():
        low = bf16(pixels.to(torch.bfloat16)).logits.float()
    check("bf16 weights", torch.isfinite(low).all().item(),
          f"max diff vs fp32 {(low - in_eval_mode).abs().max().item():.3f}")

    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
