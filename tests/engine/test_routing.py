"""Prefix affinity with bounded load (engine/routing.py), the choice both the remote pool and the
Ray Serve router make."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rrm_server.engine.routing import LOAD_FACTOR, SLACK, affinity_pick, overloaded, rendezvous

names = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8, unique=True)


@given(st.text(max_size=20), names)
def test_rendezvous_is_a_permutation_independent_of_input_order(key, replicas):
    order = rendezvous(key, replicas, name=str)
    assert sorted(order) == sorted(replicas)
    assert rendezvous(key, list(reversed(replicas)), name=str) == order


@given(st.text(max_size=20), names.filter(lambda r: len(r) >= 2), st.data())
def test_only_the_keys_of_a_leaving_replica_move(key, replicas, data):
    gone = data.draw(st.sampled_from(replicas))
    before = rendezvous(key, replicas, name=str)[0]
    after = rendezvous(key, [r for r in replicas if r != gone], name=str)[0]
    assert after == before or before == gone


@given(st.text(max_size=20), names, st.data())
def test_the_pick_is_the_first_choice_unless_it_is_overloaded(key, replicas, data):
    loads = {r: data.draw(st.integers(0, 50)) for r in replicas}
    picked = affinity_pick(key, replicas, name=str, load=loads.__getitem__)
    first = rendezvous(key, replicas, name=str)[0]
    if overloaded(loads[first], list(loads.values())):
        assert loads[picked] == min(loads.values())
    else:
        assert picked == first


def test_the_bound_is_relative_to_the_mean_plus_slack():
    assert not overloaded(SLACK, [0, 0])  # light load never spills
    assert overloaded(30, [0, 30])  # mean 15: the bound is LOAD_FACTOR * 15 + SLACK = 26.5
    assert LOAD_FACTOR * 15 + SLACK < 30
    assert not overloaded(20, [20, 20])  # evenly busy: stay
