"""Ids: made one at a time or many at once, they are ULID-like and sort in the order made."""

from __future__ import annotations

from boltic_cli.server.ids import CROCKFORD, IdGenerator, _encode


def test_many_at_once_equal_their_full_encoding_and_sort_in_order():
    now = [1_780_000_000.123]
    ids = IdGenerator(clock=lambda: now[0])
    # Enough ids to carry into the characters encoded once per change (2**20 apart).
    ids._last_ms, ids._last_random = 1_780_000_000_123, (1 << 20) - 4
    made = [ids.new("evt_")]
    made += ids.new_many("evt_", 7)
    made.append(ids.new("evt_"))
    now[0] = 1_780_000_001.5
    made += ids.new_many("evt_", 3)
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 30 and set(i[4:]) <= set(CROCKFORD) for i in made)
    ms = 1_780_000_000_123
    for offset, made_id in enumerate(made[1:8]):
        assert made_id == "evt_" + _encode((ms << 80) | ((1 << 20) - 2 + offset), 26)
    assert made[-1][4:14] == _encode(1_780_000_001_500, 10)
