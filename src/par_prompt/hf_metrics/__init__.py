"""``evaluate`` metric scripts shipped with par-prompt (loaded by path, see ``par_prompt.metrics``)."""
