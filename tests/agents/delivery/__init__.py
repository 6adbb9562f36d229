"""Tests of the delivery agents and their building blocks."""
