"""``--balance -5`` started an emulator with a negative wallet; it is refused like the other
money flags: one line naming the flag, exit 2. A negative price is refused by the same rule."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway_async.emulator import Emulator
from gateway_async.emulator.cli import main


@pytest.mark.parametrize("balance", ["-5", "-0.0001"])
def test_a_negative_balance_flag_is_one_line_exit_2(
    balance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--port", "0", f"--balance={balance}"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"gateway-async emulator: --balance must not be negative, got {balance}"
    ]


async def test_the_python_api_refuses_a_negative_balance_too(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="initial_balance must not be negative"):
        Emulator(initial_balance=Decimal("-5"))
    with pytest.raises(ValueError, match="balance must not be negative"):
        emu.set_balance(Decimal("-1"))
    assert emu.core.state.balance == Decimal("100.0000")
