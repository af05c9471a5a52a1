"""The request pipeline: a routes table from message type to a tuple of small
async steps (``routes``), the shared checks (``checks``), management steps
(``signin``), journal steps (``journal``), answer building (``respond``), the
one exception → response-code table (``codes``) and the driver (``engine``).
"""

from posp.pipeline.context import Services, TxnContext
from posp.pipeline.engine import Pipeline, Reply

__all__ = ["Pipeline", "Reply", "Services", "TxnContext"]
