"""Regenerates vector_pipeline/data/receipts.jsonl: a small, fixed set of receipts.

Deterministic (seeded), so the shipped file is reproducible: python3 scripts/make_receipts.py
"""

import json
import random
from pathlib import Path

MERCHANTS = {
    "WALMART SUPERCENTER": ["GREAT VALUE MILK 1GAL", "BANANAS", "EGGS LARGE 12CT", "WHITE BREAD", "PAPER TOWELS",
                            "PEANUT BUTTER", "DISH SOAP", "ORANGE JUICE"],
    "TARGET": ["UP&UP TISSUES", "GOOD&GATHER PASTA", "COFFEE PODS", "SHAMPOO", "BATTERIES AA", "GREEK YOGURT"],
    "COSTCO WHOLESALE": ["KIRKLAND WATER 40PK", "ROTISSERIE CHICKEN", "OLIVE OIL 2L", "ALMONDS", "TOILET PAPER 30RL"],
    "TRADER JOE'S": ["MANDARIN ORANGE CHICKEN", "EVERYTHING BAGEL SEASONING", "CAULIFLOWER GNOCCHI", "DARK CHOCOLATE"],
    "WHOLE FOODS MARKET": ["ORGANIC AVOCADOS", "KOMBUCHA", "SOURDOUGH LOAF", "WILD SALMON FILLET", "KALE"],
    "SHELL": ["UNLEADED 87 GAS", "CAR WASH", "ENERGY DRINK"],
    "STARBUCKS": ["GRANDE LATTE", "BLUEBERRY MUFFIN", "COLD BREW", "CROISSANT"],
    "CVS PHARMACY": ["IBUPROFEN 200MG", "TOOTHPASTE", "VITAMIN D3", "BAND-AIDS"],
    "HOME DEPOT": ["2X4 LUMBER 8FT", "WOOD SCREWS", "PAINT ROLLER", "LED BULB 4PK"],
}


def main() -> None:
    rng = random.Random(20261125)
    receipts = []
    for number in range(36):
        merchant = rng.choice(sorted(MERCHANTS))
        items = rng.sample(MERCHANTS[merchant], k=min(len(MERCHANTS[merchant]), rng.randint(2, 5)))
        lines = [merchant, f"{rng.randint(100, 9999)} MAIN ST, SPRINGFIELD"]
        subtotal = 0.0
        for item in items:
            price = round(rng.uniform(0.5, 40.0), 2)
            subtotal += price
            lines.append(f"{item}  {price:.2f}")
        tax = round(subtotal * 0.07, 2)
        lines += [f"SUBTOTAL  {subtotal:.2f}", f"TAX  {tax:.2f}", f"TOTAL  {subtotal + tax:.2f}",
                  rng.choice(["VISA ****1234", "MASTERCARD ****9876", "CASH", "DEBIT ****5555"]),
                  "THANK YOU FOR SHOPPING"]
        receipts.append({
            "receipt_id": f"r{number:03d}",
            "merchant": merchant,
            "date": f"2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}",
            "total": round(subtotal + tax, 2),
            "lines": lines,
        })
    out = Path(__file__).resolve().parent.parent / "vector_pipeline" / "data" / "receipts.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in receipts))
    print(f"wrote {len(receipts)} receipts to {out}")


if __name__ == "__main__":
    main()
