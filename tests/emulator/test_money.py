"""Money is exact (contract "Money"): prices and charges have at most four decimals, and a
run's ``usage.credits``, the wallet and the usage summary add up the same numbers. Issue 22,
defects 6 (a price of 0.00005 was answered "0.0000" while the wallet dropped it) and 9
(``--balance NaN`` started an emulator that answered 500 to every run)."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import aiohttp
import pytest

from gateway_async.emulator import Emulator
from gateway_async.emulator.cli import main

from .conftest import Api, FakeClock

PRICES = {"cheap": "0.0001", "odd": "1.2345", "whole": "2"}
EXTRA = [{"slug": slug, "price_per_run": price} for slug, price in PRICES.items()]
BALANCE = Decimal("10.0000")


@pytest.mark.parametrize("price", ["0.00005", "0.12345", "1e-5", "NaN", "Infinity", "1e400"])
def test_a_finer_price_is_refused_at_start(price: str) -> None:
    with pytest.raises(ValueError, match=r"model 'fine'.*4 decimal") as info:
        Emulator(extra_models=[{"slug": "fine", "price_per_run": price}])
    assert str(Decimal(price)) in str(info.value)


def test_a_negative_price_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'minus'.*negative"):
        Emulator(extra_models=[{"slug": "minus", "price_per_run": "-0.0010"}])


@pytest.mark.parametrize("balance", ["NaN", "Infinity", "-Infinity", "1e400", "sNaN", "0.00001"])
def test_money_flags_refuse_non_finite_or_over_precise_values(
    balance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", f"--balance={balance}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--balance" in err
    assert "4 decimal places" in err


@pytest.mark.parametrize("balance", ["NaN", "1e400", "0.00001"])
def test_the_python_api_refuses_them_too(balance: str) -> None:
    with pytest.raises(ValueError, match="initial_balance"):
        Emulator(initial_balance=Decimal(balance))


async def test_set_balance_refuses_them(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="balance"):
        emu.set_balance(Decimal("Infinity"))
    assert emu.core.state.balance == Decimal("100.0000")


async def test_replies_wallet_and_usage_reconcile(
    clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    """A mixed workload (successes, model failures, replays, concurrent runs, 402s): the sum
    of the replies' credits is what left the wallet, is total_credits, is the sum of by_model,
    and each model's share is its runs times its price."""
    async with Emulator(clock=clock, extra_models=EXTRA, initial_balance=BALANCE) as emu:
        api = Api(session, emu)
        charged: dict[str, tuple[str, str]] = {}  # run id -> (model, credits), once each
        refused = Counter[int]()

        async def run(model: str, key: str | None = None, fail: bool = False) -> None:
            params = {"fail": "boom"} if fail else {}
            headers = {} if key is None else {"Idempotency-Key": key}
            body = {"model": model, "input": {"n": 1}, "params": params}
            reply = await api.post("/api/runs", body, headers=headers)
            if reply.status != 200:
                refused[reply.status] += 1
                return
            charged[reply.body["id"]] = (model, reply.body["usage"]["credits"])

        await asyncio.gather(*(run(slug) for slug in PRICES for _ in range(3)))
        await asyncio.gather(*(run("odd", fail=True) for _ in range(2)))
        for _ in range(3):  # one execution, two replays
            await run("cheap", key="same")
        await asyncio.gather(*(run("whole") for _ in range(5)))  # some end in 402
        assert refused[402] > 0
        assert set(refused) == {402}

        wallet = (await api.get("/api/billing/wallet")).body
        summary = (await api.get("/api/billing/usage/summary")).body
    spent = sum((Decimal(c) for _, c in charged.values()), Decimal())
    assert BALANCE - Decimal(wallet["balance"]) == spent
    assert Decimal(summary["total_credits"]) == spent
    assert summary["total_runs"] == len(charged)
    by_model = {m["model"]: m for m in summary["by_model"]}
    assert sum(Decimal(m["credits"]) for m in by_model.values()) == spent
    for slug, price in PRICES.items():
        runs = sum(model == slug for model, _ in charged.values())
        assert by_model[slug]["runs"] == runs
        assert Decimal(by_model[slug]["credits"]) == runs * Decimal(price)
    assert all(Decimal(c) == Decimal(PRICES[m]) for m, c in charged.values())
    assert emu.stats.charged_total == spent
