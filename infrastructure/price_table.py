"""The AWS KMS price table the usage estimate multiplies by: the one shipped in the package
(infrastructure/data/aws-kms-prices.json), or a JSON file of the same shape named by
KEYLEDGER_PRICE_TABLE (docs/pricing.md)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from application.pricing import PriceTable

MAX_BYTES = 64 * 1024


def load_price_table(path: Path | None) -> PriceTable:
    """Raises ValueError with a message naming the file and the problem."""
    where = str(path) if path else "the shipped price table"
    try:
        if path is None:
            text = resources.files("infrastructure").joinpath("data/aws-kms-prices.json").read_text("utf-8")
        else:
            with open(path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
            if len(raw) > MAX_BYTES:
                raise ValueError("it is larger than 64 KiB")
            text = raw.decode("utf-8")
        return PriceTable.from_mapping(json.loads(text))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None
