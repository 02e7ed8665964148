"""Compiled contract artifacts (package data)."""
