"""Offline evaluation of the service on a labelled set (``pocketvl eval DATASET.jsonl``).

``dataset`` reads and checks the JSON Lines set, ``metrics`` scores answers as the
published DA evaluations do (pure functions), ``report`` renders the results, and
``runner`` sends the set through Kafka and collects what comes back.
"""
