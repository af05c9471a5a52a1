"""posp: an acquirer switch for UnionPay-style POS terminals."""

__version__ = "0.1.0"
