"""The handler map queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mendbot.db import core, handlers
from mendbot.db.handlers import HandlerLocation

pytestmark = pytest.mark.engines


def _at(kind: str, path: str, qualname: str, line: int, cog: str) -> HandlerLocation:
    return HandlerLocation(kind, path, qualname, line, cog)


async def test_an_empty_map_has_no_kinds(engine_db: core.Connection) -> None:
    """kinds() and for_kinds() find nothing before any cog is mapped."""
    assert await handlers.kinds(engine_db) == set()
    assert await handlers.for_kinds(engine_db, ["app:roll"]) == []


async def test_a_cogs_handlers_are_found_by_kind_in_a_stable_order(engine_db: core.Connection) -> None:
    """for_kinds() returns the locations of the kinds asked for, by kind, path, qualname."""
    roll = _at("app:roll", "cogs/dice.py", "Dice.roll", 10, "Dice")
    roll_helper = _at("app:roll", "cogs/dice.py", "Dice.advantage", 30, "Dice")
    shop = _at("app:shop", "cogs/shop.py", "Shop.buy", 5, "Shop")
    await handlers.replace_cog(engine_db, "Dice", [roll, roll_helper], 1.0)
    await handlers.replace_cog(engine_db, "Shop", [shop], 1.0)
    assert await handlers.for_kinds(engine_db, {"app:roll", "app:shop"}) == [roll_helper, roll, shop]
    assert await handlers.for_kinds(engine_db, ["app:shop", "app:none"]) == [shop]
    assert await handlers.kinds(engine_db) == {"app:roll", "app:shop"}


async def test_for_kinds_of_no_kinds_is_empty(engine_db: core.Connection) -> None:
    """for_kinds() with an empty collection returns nothing."""
    await handlers.replace_cog(
        engine_db, "Dice", [_at("app:roll", "cogs/dice.py", "Dice.roll", 10, "Dice")], 1.0
    )
    assert await handlers.for_kinds(engine_db, []) == []


async def test_replacing_a_cog_forgets_what_it_handled_before(engine_db: core.Connection) -> None:
    """replace_cog() drops the cog's old locations and keeps other cogs' ones."""
    await handlers.replace_cog(
        engine_db, "Dice", [_at("app:old", "cogs/dice.py", "Dice.old", 1, "Dice")], 1.0
    )
    shop = _at("app:shop", "cogs/shop.py", "Shop.buy", 5, "Shop")
    await handlers.replace_cog(engine_db, "Shop", [shop], 1.0)
    roll = _at("app:roll", "cogs/dice.py", "Dice.roll", 12, "Dice")
    await handlers.replace_cog(engine_db, "Dice", [roll], 2.0)
    assert await handlers.kinds(engine_db) == {"app:roll", "app:shop"}
    await handlers.replace_cog(engine_db, "Dice", [], 3.0)
    assert await handlers.kinds(engine_db) == {"app:shop"}


async def test_a_location_moved_to_another_cog_is_replaced(engine_db: core.Connection) -> None:
    """A (kind, path, qualname) stored again, by another cog or twice in one call: the last one wins."""
    await handlers.replace_cog(
        engine_db, "Old", [_at("app:roll", "cogs/dice.py", "Dice.roll", 10, "Old")], 1.0
    )
    moved = _at("app:roll", "cogs/dice.py", "Dice.roll", 20, "New")
    await handlers.replace_cog(
        engine_db, "New", [_at("app:roll", "cogs/dice.py", "Dice.roll", 15, "New"), moved], 2.0
    )
    assert await handlers.for_kinds(engine_db, ["app:roll"]) == [moved]
