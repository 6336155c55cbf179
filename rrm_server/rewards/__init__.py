"""Rewards from pairwise verdicts: chat-template stripping, scoring, group collection."""
