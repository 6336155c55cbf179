"""Recovering the question and the response from chat-formatted OpenRLHF queries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rrm_server.rewards.templates import prompt_to_text, response_to_text, split_query

CHATML = ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
          "<|im_start|>assistant\n")
LLAMA3 = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
          "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
          "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_chatml_and_llama3():
    assert prompt_to_text(CHATML) == "What is 2+2?"
    assert prompt_to_text(LLAMA3) == "What is 2+2?"
    assert response_to_text("It is 4.<|im_end|>") == "It is 4."
    assert response_to_text("It is 4.<|eot_id|>") == "It is 4."
    assert response_to_text("It is 4.<|im_end|>\n<|endoftext|>") == "It is 4."
    assert prompt_to_text("plain question", "none") == "plain question"
    assert prompt_to_text(CHATML, "none") == CHATML.strip()


def test_multi_turn_takes_the_last_user_turn():
    p = ("<|im_start|>user\nfirst<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
         "<|im_start|>user\nsecond question<|im_end|>\n<|im_start|>assistant\n")
    assert prompt_to_text(p) == "second question"


def test_split_query():
    assert split_query(CHATML + "4<|im_end|>", CHATML) == "4<|im_end|>"
    assert split_query("something else", CHATML) is None


@given(st.text(max_size=40).filter(lambda s: "<|" not in s), st.text(max_size=40).filter(lambda s: "<|" not in s))
def test_roundtrip_any_text(question, answer):
    prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    assert prompt_to_text(prompt) == question.strip()
    assert response_to_text(split_query(prompt + answer + "<|im_end|>", prompt)) == answer.strip()
