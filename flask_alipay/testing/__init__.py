"""Test helpers shipped to users: an emulator of Alipay's sign-in endpoints."""

from flask_alipay.testing.emulator import (
    AUTO,
    AlipayEmulator,
    EmulatedUser,
    EmulatorServer,
    GatewayRequest,
    Injection,
    beijing_now,
)

__all__ = [
    "AUTO",
    "AlipayEmulator",
    "EmulatedUser",
    "EmulatorServer",
    "GatewayRequest",
    "Injection",
    "beijing_now",
]
