"""The restart policy (``runtime.restarts``), pure: ``max_restarts`` per sliding window,
an immediate first restart then a doubling wait, exhaustion, and the budget back
after a healthy window or once an exhausted slot is retried."""

from __future__ import annotations

import os

import pytest

from streamlabel.errors import SettingsError
from streamlabel.runtime.restarts import RestartBudget, RestartPolicy
from streamlabel.settings.runtime import load_runtime_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STREAMLABEL_* variable leaks into the settings."""
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


POLICY = RestartPolicy(max_restarts=3, window_s=100.0, backoff_s=1.0, backoff_max_s=3.0)


def test_the_budget_is_spent_within_the_window_then_exhausted_without_spending() -> None:
    budget = RestartBudget()
    assert [POLICY.restart(budget, t) for t in (0.0, 10.0, 20.0)] == [0.0, 11.0, 22.0]
    assert POLICY.restart(budget, 30.0) is None
    assert list(budget.times) == [0.0, 10.0, 20.0]


def test_the_budget_comes_back_as_restarts_leave_the_window() -> None:
    budget = RestartBudget()
    for t in (0.0, 10.0, 20.0):
        POLICY.restart(budget, t)
    assert POLICY.restart(budget, 99.0) is None
    assert POLICY.restart(budget, 100.0) == 102.0  # the one at 0 left: two remain
    assert budget.used(500.0, POLICY.window_s) == 0


def test_the_wait_doubles_up_to_the_maximum() -> None:
    assert [POLICY.backoff(n) for n in range(5)] == [0.0, 1.0, 2.0, 3.0, 3.0]
    assert RestartPolicy(backoff_s=5.0, backoff_max_s=120.0).backoff(10_000) == 120.0


def test_an_exhausted_slot_is_retried_a_window_later_with_its_budget_back() -> None:
    budget = RestartBudget()
    for t in (0.0, 1.0, 2.0):
        POLICY.restart(budget, t)
    assert POLICY.restart(budget, 3.0) is None
    retry_at = POLICY.retry_exhausted(3.0)
    assert retry_at == 103.0
    assert POLICY.restart(budget, retry_at) == retry_at  # at once: the window is empty


def test_a_budget_of_zero_exhausts_at_the_first_failure() -> None:
    assert RestartPolicy(max_restarts=0).restart(RestartBudget(), 0.0) is None


def test_the_policy_comes_from_the_supervisor_settings() -> None:
    s = load_runtime_settings(
        None, supervisor={"max_restarts": 7, "restart_window_s": 30, "restart_backoff_s": 2,
                          "restart_backoff_max_s": 8},
    )  # fmt: skip
    assert RestartPolicy.of(s.supervisor) == RestartPolicy(7, 30.0, 2.0, 8.0)
    defaults = RestartPolicy.of(load_runtime_settings(None).supervisor)
    assert defaults == RestartPolicy()


def test_a_maximum_backoff_below_the_first_is_refused_naming_both() -> None:
    with pytest.raises(SettingsError, match="restart_backoff_max_s"):
        load_runtime_settings(
            None, supervisor={"restart_backoff_s": 10, "restart_backoff_max_s": 5}
        )
