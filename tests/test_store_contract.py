"""The contract suite as a user sees it: the store written in docs/custom-store.md passes it,
stores with the usual bugs fail the tests that name those bugs, and a store without bulk
operations can say so."""

from __future__ import annotations

import inspect
import re
import sys
import types
import unittest
from pathlib import Path
from typing import Any

from tornado_session import StoreUnavailableError
from tornado_session.stores import Ready, Store
from tornado_session.stores.base import UserRecord
from tornado_session.testing import StoreContract

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "custom-store.md"


def guide_module() -> types.ModuleType:
    """The Python blocks of docs/custom-store.md, run as one module."""
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2, "the guide has the store and its test"
    module = types.ModuleType("custom_store_guide")
    sys.modules[module.__name__] = module
    try:
        exec(compile("\n".join(blocks), str(GUIDE), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


#: The contract's tests of the user index (they call `StoreContract.needs_user_index`).
INDEX_TESTS = {
    name for name in unittest.defaultTestLoader.getTestCaseNames(StoreContract)
    if "needs_user_index" in inspect.unwrap(getattr(StoreContract, name)).__code__.co_names
}


def run(case: type[unittest.TestCase], names: list[str] | None = None) -> unittest.TestResult:
    loader = unittest.defaultTestLoader
    if names is None:
        suite = loader.loadTestsFromTestCase(case)
    else:
        suite = unittest.TestSuite(case(name) for name in names)
    result = unittest.TestResult()
    suite.run(result)
    return result


def failed(result: unittest.TestResult) -> set[str]:
    return {test._testMethodName for test, _ in result.failures + result.errors}  # type: ignore[attr-defined]


class TestTheGuidesStore(unittest.TestCase):
    guide: types.ModuleType

    @classmethod
    def setUpClass(cls) -> None:
        cls.guide = guide_module()

    def test_the_guides_sqlite_store_passes_the_whole_contract(self) -> None:
        case = self.guide.TestSQLiteStore
        self.assertTrue(issubclass(case, StoreContract))
        result = run(case)
        contract_tests = unittest.defaultTestLoader.getTestCaseNames(StoreContract)
        self.assertEqual(result.testsRun, len(contract_tests))
        # The guide's store keeps no user index, and says so: only those tests are skipped.
        self.assertEqual({reason for _, reason in result.skipped},
                         {"TestSQLiteStore.user_index is False"})
        self.assertEqual(len(result.skipped), len(INDEX_TESTS))
        self.assertTrue(result.wasSuccessful(), result.failures + result.errors)

    def test_a_store_that_brings_back_a_destroyed_session_fails_the_contract(self) -> None:
        class Resurrects(self.guide.SQLiteStore):  # type: ignore[name-defined,misc]
            async def set(self, key: str, data: Any, max_age: float, **kwargs: Any) -> bool:
                kwargs["previous"] = None  # always a whole replacement
                return bool(await super().set(key, data, max_age, **kwargs))

        class TestResurrects(StoreContract):
            def make_store(self) -> Any:
                return Resurrects(clock=self.clock)

        names = [
            "test_update_does_not_resurrect_a_destroyed_session",
            "test_update_of_an_expired_session_is_not_written",
            "test_concurrent_updates_of_different_keys_both_survive",
            "test_fifty_concurrent_updates_of_one_session_all_survive",
            "test_set_then_get_returns_equal_data",
        ]
        result = run(TestResurrects, names)
        self.assertEqual(failed(result), set(names[:4]))

    def test_a_store_that_overwrites_parallel_writes_of_a_key_fails_the_contract(self) -> None:
        class Overwrites(self.guide.SQLiteStore):  # type: ignore[name-defined,misc]
            async def set(self, key: str, data: Any, max_age: float, **kwargs: Any) -> bool:
                kwargs.pop("ops", None)  # the request's value, not its increment
                kwargs.pop("on_conflict", None)
                return bool(await super().set(key, data, max_age, **kwargs))  # nothing reported

        class TestOverwrites(StoreContract):
            def make_store(self) -> Any:
                return Overwrites(clock=self.clock)

        names = [
            "test_parallel_increments_all_count",
            "test_parallel_appends_all_stay_within_the_limit",
            "test_a_key_changed_since_the_load_is_a_conflict_and_the_last_write_wins",
            "test_fail_writes_nothing_of_a_write_in_conflict",
            "test_first_write_wins_keeps_the_stored_value_and_writes_the_other_keys",
            "test_different_keys_changed_in_parallel_are_not_a_conflict",
        ]
        result = run(TestOverwrites, names)
        self.assertEqual(failed(result), set(names[:5]))

    def test_a_store_that_returns_expired_records_fails_the_contract(self) -> None:
        class NeverExpires(self.guide.SQLiteStore):  # type: ignore[name-defined,misc]
            def _live(self, key: str) -> Any:
                return self._db.execute(
                    "SELECT data FROM sessions WHERE key = ?", (key,)
                ).fetchone()

        class TestNeverExpires(StoreContract):
            def make_store(self) -> Any:
                return NeverExpires(clock=self.clock)

        names = [
            "test_expired_record_reads_as_none",
            "test_each_record_keeps_its_own_max_age",
            "test_touch_extends_expiry",
        ]
        result = run(TestNeverExpires, names)
        self.assertEqual(failed(result), set(names[:2]))

    def test_a_store_without_bulk_operations_skips_only_their_tests(self) -> None:
        class NoBulk(self.guide.SQLiteStore):  # type: ignore[name-defined,misc]
            destroy_matching = Store.destroy_matching  # the base's: NotImplementedError
            count = Store.count
            clear = Store.clear

        class TestNoBulk(StoreContract):
            bulk_operations = False
            user_index = False

            def make_store(self) -> Any:
                return NoBulk(clock=self.clock)

        result = run(TestNoBulk)
        self.assertTrue(result.wasSuccessful(), result.failures + result.errors)
        skipped = {test._testMethodName for test, _ in result.skipped}  # type: ignore[attr-defined]
        self.assertEqual(len(skipped - INDEX_TESTS), 8)
        self.assertTrue(all("destroy_all" in n or "count" in n or "neighbour" in n
                            for n in skipped - INDEX_TESTS), skipped)
        self.assertEqual({reason for _, reason in result.skipped},
                         {"TestNoBulk.bulk_operations is False", "TestNoBulk.user_index is False"})

        class TestNoBulkClaimed(StoreContract):
            def make_store(self) -> Any:
                return NoBulk(clock=self.clock)

        result = run(TestNoBulkClaimed, ["test_count_and_clear"])
        self.assertEqual(failed(result), {"test_count_and_clear"})

    def test_a_store_that_claims_an_index_it_does_not_keep_fails_the_index_tests(self) -> None:
        class TestIndexClaimed(StoreContract):
            def make_store(self) -> Any:
                return TestTheGuidesStore.guide.SQLiteStore(clock=self.clock)

        result = run(TestIndexClaimed, sorted(INDEX_TESTS))
        self.assertEqual(failed(result), INDEX_TESTS)

    def test_a_memory_store_whose_index_forgets_destroyed_sessions_fails_the_contract(
        self,
    ) -> None:
        from tornado_session.stores import MemoryStore

        class Forgets(MemoryStore):
            def destroy(self, key: str) -> Any:  # drops the record, not its index entry
                self._check_open()
                entry = self._protected.pop(key, None) or self._probation.pop(key, None)
                return Ready(entry is not None)

            async def user_sessions(self, user: Any) -> Any:  # trusts the index blindly
                return [UserRecord(key, 0.0, self._owners[key])
                        for key in sorted(self._users.get(user, ()))]

        class TestForgets(StoreContract):
            def make_store(self) -> Any:
                return Forgets(clock=self.clock, user_key=self.user_key)

        names = ["test_a_destroyed_session_leaves_the_index",
                 "test_regenerate_moves_the_entry_to_the_new_key"]
        self.assertEqual(failed(run(TestForgets, names)), set(names))


class TestTheExtensionApi(unittest.IsolatedAsyncioTestCase):
    """What a store of one's own uses to keep the connection state is public, and the guide
    uses nothing else."""

    PUBLIC = ("call_backend", "ping_backend", "translate_error", "mark_connected",
              "mark_disconnected", "close")

    def test_the_guide_uses_no_private_name_of_store(self) -> None:
        text = GUIDE.read_text(encoding="utf-8")
        used = set(re.findall(r"(?:self|super\(\))\._(?!_)(\w+)", text))
        used |= set(re.findall(r"`_(?!_)(\w+)\(", text))
        private_of_store = {name for name in used if hasattr(Store, "_" + name)}
        self.assertEqual(private_of_store, set())
        for name in self.PUBLIC:
            with self.subTest(name=name):
                self.assertIn(f"{name}(", text)
                self.assertTrue(getattr(Store, name).__doc__)

    async def test_a_store_built_on_the_public_methods_reports_loss_and_return(self) -> None:
        class DriverDown(Exception):
            pass

        class Flaky(Store):
            backend = "Flaky"
            up = True

            async def _command(self) -> str:
                if not self.up:
                    raise DriverDown("no route")
                return "answer"

            def translate_error(self, exc: Exception) -> Any:
                if isinstance(exc, DriverDown):
                    return StoreUnavailableError(f"Flaky cannot be reached: {exc}")
                return super().translate_error(exc)

            async def get(self, key: str) -> Any:
                await self.call_backend(self._command)
                return None

            async def set(self, key: str, data: Any, max_age: float, **kwargs: Any) -> bool:
                return True

            async def destroy(self, key: str) -> bool:
                return False

        store = Flaky()
        events: list[str] = []
        store.on("disconnect", lambda event: events.append("disconnect"))
        store.on("connect", lambda event: events.append("connect"))
        store.up = False
        with self.assertLogs("tests.test_store_contract", "WARNING"), \
                self.assertRaisesRegex(StoreUnavailableError, "no route"):
            await store.get("k")
        self.assertFalse(store.connected)
        store.up = True
        with self.assertLogs("tests.test_store_contract", "INFO"):
            await store.get("k")
        self.assertEqual(events, ["disconnect", "connect"])
        store.mark_disconnected(reason="heartbeat")  # a driver's own news
        store.mark_disconnected(reason="heartbeat")  # no change: nothing more
        store.mark_connected(reason="heartbeat")
        self.assertEqual(events, ["disconnect", "connect", "disconnect", "connect"])
        await store.close()
        with self.assertRaisesRegex(StoreUnavailableError, "Flaky is closed"):
            await store.get("k")

    async def test_the_guides_store_refuses_calls_once_closed(self) -> None:
        store = guide_module().SQLiteStore()
        self.assertTrue(await store.set("k", {"a": 1}, 60))
        await store.close()
        with self.assertRaises(StoreUnavailableError):
            await store.get("k")
