"""Message contracts: the product's API. JSON Schemas in ``schemas/`` are generated from these."""
