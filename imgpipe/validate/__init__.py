"""Validate and clean (the validate stage): the GX suite, quarantine, and the cleaning checks."""
