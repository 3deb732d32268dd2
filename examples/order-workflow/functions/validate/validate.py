"""The order workflow's first step: is this an order we can price?

The state machine passes the message from the queue as it arrived. This step answers
{"valid": true, "order": {...}} with the order normalised (only known fields, currency in upper
case), or {"valid": false, "order_id": ..., "reasons": [...]} naming every problem, so that the
rejection announced on the topic tells the sender what to fix.
"""

import os
import re

CURRENCIES = {"EUR", "USD", "GBP", "CHF", "JPY"}
SKU = re.compile(r"^[A-Z0-9][A-Z0-9-]{0,31}$")
MAX_LINES = 100
MAX_QUANTITY = 10_000
MAX_UNIT_PRICE_CENTS = 100_000_000


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check(order):
    """The reasons `order` cannot be priced (empty when it can) and its normalised form."""
    reasons = []
    if not isinstance(order, dict):
        return ["the order is not a JSON object"], None
    order_id = order.get("order_id")
    if not isinstance(order_id, str) or not 1 <= len(order_id) <= 64:
        reasons.append("order_id must be a string of 1 to 64 characters")
    customer = order.get("customer")
    if not isinstance(customer, str) or not 1 <= len(customer) <= 128:
        reasons.append("customer must be a string of 1 to 128 characters")
    currency = order.get("currency")
    currency = currency.upper() if isinstance(currency, str) else currency
    if currency not in CURRENCIES:
        reasons.append(f"currency must be one of {', '.join(sorted(CURRENCIES))}")
    lines = order.get("lines")
    clean = []
    if not isinstance(lines, list) or not 1 <= len(lines) <= MAX_LINES:
        reasons.append(f"lines must be a list of 1 to {MAX_LINES} lines")
        lines = []
    for i, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            reasons.append(f"line {i} is not an object")
            continue
        sku, quantity, price = line.get("sku"), line.get("quantity"), line.get("unit_price_cents")
        if not isinstance(sku, str) or not SKU.match(sku):
            reasons.append(f"line {i}: sku must be 1-32 upper-case letters, digits or dashes")
        if not _whole(quantity) or not 1 <= quantity <= MAX_QUANTITY:
            reasons.append(f"line {i}: quantity must be a whole number from 1 to {MAX_QUANTITY}")
        if not _whole(price) or not 0 <= price <= MAX_UNIT_PRICE_CENTS:
            reasons.append(f"line {i}: unit_price_cents must be a whole number from 0 to {MAX_UNIT_PRICE_CENTS}")
        clean.append({"sku": sku, "quantity": quantity, "unit_price_cents": price})
    if reasons:
        return reasons, None
    return [], {"order_id": order_id, "customer": customer, "currency": currency, "lines": clean}


def handler(event, _context):
    reasons, order = check(event)
    if reasons:
        order_id = event.get("order_id") if isinstance(event, dict) else None
        return {"valid": False, "order_id": order_id, "reasons": reasons,
                "version": os.environ.get("APP_VERSION", "")}
    return {"valid": True, "order": order}
