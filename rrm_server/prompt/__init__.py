"""The judge's input (RRM prompt through the model's chat template) and output (verdict parsing)."""

from rrm_server.prompt.template import PromptBuilder, PromptSpec, PromptTemplateError, RenderedPrompt, rrm_prompt
from rrm_server.prompt.verdict import InvalidReason, ParsedVerdict, parse_verdict

__all__ = [
    "InvalidReason",
    "ParsedVerdict",
    "PromptBuilder",
    "PromptSpec",
    "PromptTemplateError",
    "RenderedPrompt",
    "parse_verdict",
    "rrm_prompt",
]
