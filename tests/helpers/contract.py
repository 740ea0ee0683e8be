"""A service contract's inputs and a record that satisfies them (serving and feeds tests)."""

INPUTS = {
    "Age": {"kind": "numeric", "type": "integer", "nullable": False, "min": 18.0, "max": 100.0},
    "Income": {"kind": "numeric", "type": "float", "nullable": True, "min": 0.0},
    "Home": {"kind": "categorical", "type": "category", "nullable": True,
             "categories": ["owner", "rent"]},
    "Records": {"kind": "categorical", "type": "category", "nullable": False,
                "categories": ["no", "yes"]},
}
GOOD = {"Age": 30, "Income": 120.5, "Home": "rent", "Records": "no"}
