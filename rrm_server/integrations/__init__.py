"""Adapters for RL trainers: OpenRLHF (reward_func file), verl (compute_score), TRL (GRPO reward)."""
