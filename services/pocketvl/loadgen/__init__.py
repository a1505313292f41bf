"""``pocketvl bench``: load over Kafka against a running worker, measured end to end."""
