"""The web console's settings (``ui.*``): whether ``streamlabel run`` serves it, where,
and the token it asks for when bound beyond loopback."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr

from streamlabel.settings.loader import Section

__all__ = ["UISettings", "is_loopback"]


class UISettings(Section):
    """The live web console (``streamlabel run --ui``; docs/console.md)."""

    enabled: bool = Field(
        default=False,
        description="Serve the web console from the driver (``streamlabel run --ui`` turns it on).",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Bind address; anything but a loopback address needs ui.token.",
    )
    port: int = Field(
        default=8765, ge=0, le=65535, description="The console's port (0 = any free port)."
    )
    token: SecretStr | None = Field(
        default=None,
        description="Token every request must carry (Authorization: Bearer, or ?token= once, "
        "which sets a cookie); required beyond loopback. Env: STREAMLABEL_UI__TOKEN.",
    )

    @property
    def loopback(self) -> bool:
        """Whether :attr:`host` is a loopback address (only this machine reaches it)."""
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches this machine only.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
