"""Stage 2, target sources: which targets to poll (static ones from the config for now) and how
the set changes while the exporter runs."""
