"""Materialized views: definitions per branch, incremental refresh from the version relations, staleness, scheduler.

docs/materialized-views.md describes the statements, the storage and the staleness formula.
"""
