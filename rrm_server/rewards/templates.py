"""Turn a policy's chat-formatted prompt and response back into plain text for the judge.

OpenRLHF sends ``query[i]`` = prompt + sampled response, decoded WITH the policy's chat special
tokens, and ``prompts[i]`` = the prompt alone. The judge wants the user's question and the answer
as text; it renders them through its own template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TemplateName = Literal["auto", "chatml", "llama3", "none"]


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    detect: str
    user: re.Pattern[str]  # captures the content of each user turn
    special: re.Pattern[str]  # any leftover control token to drop


TEMPLATES = {
    "chatml": ChatTemplate(
        "chatml",
        "<|im_start|>",
        re.compile(r"<\|im_start\|>user\s*\n(.*?)(?:<\|im_end\|>|$)", re.S),
        re.compile(r"<\|im_start\|>(?:system|user|assistant)?\s*|<\|im_end\|>|<\|endoftext\|>"),
    ),
    "llama3": ChatTemplate(
        "llama3",
        "<|start_header_id|>",
        re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)", re.S),
        re.compile(r"<\|begin_of_text\|>|<\|start_header_id\|>\w*<\|end_header_id\|>\s*|<\|eot_id\|>"
                   r"|<\|end_of_text\|>"),
    ),
}
_TRAILING_EOS = re.compile(r"(?:\s*(?:<\|im_end\|>|<\|eot_id\|>|<\|endoftext\|>|<\|end_of_text\|>|</s>|<eos>))+\s*$")


def detect(text: str) -> ChatTemplate | None:
    for t in TEMPLATES.values():
        if t.detect in text:
            return t
    return None


def prompt_to_text(prompt: str, template: TemplateName = "auto") -> str:
    """The last user turn of a chat-formatted prompt (the question), or the prompt itself."""
    t = detect(prompt) if template == "auto" else TEMPLATES.get(template)
    if t is None:
        return prompt.strip()
    turns = t.user.findall(prompt)
    if turns:
        return turns[-1].strip()
    return t.special.sub("", prompt).strip()


def response_to_text(response: str, template: TemplateName = "auto") -> str:
    """A sampled response without the end-of-turn/end-of-text tokens the policy decoded with it."""
    text = _TRAILING_EOS.sub("", response)
    t = detect(text) if template == "auto" else TEMPLATES.get(template)
    if t is not None:
        text = t.special.sub("", text)
    return text.strip()


def split_query(query: str, prompt: str) -> str | None:
    """OpenRLHF's convention: the response is ``query`` minus its ``prompt`` prefix (None if it is not one)."""
    if not query.startswith(prompt):
        return None
    return query[len(prompt):]
