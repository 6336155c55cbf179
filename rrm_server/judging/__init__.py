"""Judging: votes and majorities, ratings, brackets (pure) and the strategies that schedule matches."""
