"""The task registry and each domain's tasks: models, prompts, layouts, parsers."""
