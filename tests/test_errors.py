"""The error tree: one ApiError class per documented code, with the retry flags the issue names."""

from __future__ import annotations

import pickle

import pytest

from rhflow import errors
from rhflow.errors import ApiError, api_error

RETRYABLE = [415, 421, 1003, 1005, 1010, 1011, 1504, 500]
PERMANENT = [301, 380, 416, 433, 801, 802, 803, 806, 810, 812]
BUSY = [415, 421, 814]
FATAL = [416, 801, 802, 806, 811, 812, 1002]


@pytest.mark.parametrize("code", RETRYABLE)
def test_transient_codes_are_retryable(code: int) -> None:
    assert api_error(code).retryable


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_codes_are_not_retryable(code: int) -> None:
    assert not api_error(code).retryable


@pytest.mark.parametrize("code", BUSY)
def test_busy_codes_mean_back_pressure(code: int) -> None:
    err = api_error(code)
    assert err.busy and err.retryable and not err.fatal


@pytest.mark.parametrize("code", FATAL)
def test_fatal_codes_stop_the_run(code: int) -> None:
    assert api_error(code).fatal


def test_every_documented_code_has_its_own_class() -> None:
    documented = [
        301,
        380,
        412,
        415,
        416,
        421,
        423,
        433,
        435,
        436,
        500,
        801,
        802,
        803,
        804,
        805,
        806,
        807,
        808,
        809,
        810,
        811,
        812,
        813,
        814,
        901,
        *range(1000, 1016),
        1101,
        1501,
        1504,
        1505,
    ]
    classes = {code: type(api_error(code)) for code in documented}
    assert all(cls is not ApiError for cls in classes.values())
    assert len(set(classes.values())) == len(documented)


def test_message_names_code_identifier_and_what_to_do() -> None:
    err = api_error(421, "TASK_QUEUE_MAXED")
    assert str(err) == (
        "RunningHub answered 421 TASK_QUEUE_MAXED (the key's concurrency limit is reached)"
    )
    assert isinstance(err, errors.QueueFullError)


def test_v2_error_codes_arrive_as_strings() -> None:
    err = api_error("812", "CORPAPIKEY_INSUFFICIENT_FUNDS")
    assert isinstance(err, errors.InsufficientFundsError) and err.fatal


def test_http_status_and_unknown_codes_still_give_an_api_error() -> None:
    assert isinstance(api_error(503), errors.ServerError) and api_error(503).retryable
    unknown = api_error(777, "SOMETHING_NEW")
    assert type(unknown) is ApiError and unknown.code == 777 and not unknown.retryable


def test_api_errors_survive_pickling_for_worker_threads_and_processes() -> None:
    err = pickle.loads(pickle.dumps(api_error(803, "node 5 has no field 'seeed'")))
    assert isinstance(err, errors.InvalidNodeInfoError)
    assert err.message == "node 5 has no field 'seeed'"


def test_config_error_lists_every_problem_sorted() -> None:
    err = errors.ConfigError(
        [
            errors.Problem("b.yaml", 3, 1, "steps.x", "second file"),
            errors.Problem("a.yaml", 9, 5, "", "later line"),
            errors.Problem("a.yaml", 2, 7, "name", "earlier line"),
        ]
    )
    assert str(err).splitlines() == [
        "a.yaml:2:7: name: earlier line",
        "a.yaml:9:5: later line",
        "b.yaml:3:1: steps.x: second file",
    ]
    assert err.exit_code == 2
