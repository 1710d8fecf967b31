"""Workers of the order-fulfillment demo: ``partita worker examples.order_fulfillment.workers``."""

from __future__ import annotations

import hashlib

from partita.actors import TerminalError, worker_task

_payment_attempts: dict[str, int] = {}


@worker_task("validate_order", concurrency=4)
def validate_order(orderId: str, items: list[dict[str, object]]) -> dict[str, object]:
    if not items:
        raise TerminalError(f"order {orderId} has no items")
    total = 0.0
    for item in items:
        qty, price = item.get("qty"), item.get("price")
        if not isinstance(qty, int | float) or not isinstance(price, int | float):
            raise TerminalError(f"order {orderId}: item {item} needs a numeric qty and price")
        total += qty * price
    return {"valid": True, "total": round(total, 2)}


@worker_task("process_payment", concurrency=4)
async def process_payment(orderId: str, amount: float) -> dict[str, object]:
    # The payment gateway times out on the first attempt of every order: the TaskDef's retries absorb it.
    attempt = _payment_attempts.get(orderId, 0) + 1
    _payment_attempts[orderId] = attempt
    if attempt == 1:
        raise ConnectionError("payment gateway timed out")
    payment_id = "pay_" + hashlib.sha256(f"{orderId}:{amount}".encode()).hexdigest()[:12]
    return {"paymentId": payment_id, "charged": amount}


@worker_task("update_inventory", concurrency=4)
def update_inventory(items: list[dict[str, object]], paymentId: str) -> dict[str, object]:
    return {"reserved": sum(int(str(item["qty"])) for item in items), "paymentId": paymentId}


@worker_task("notify", concurrency=4)
async def notify(email: str, message: str) -> dict[str, object]:
    return {"sent": True, "to": email, "message": message}
