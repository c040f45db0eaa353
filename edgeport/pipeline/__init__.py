"""Pipelines: the export flow, recipes, the stage cache and `edgeport run`."""
