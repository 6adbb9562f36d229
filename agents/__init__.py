"""Faust agents of the Clarion pipeline and the pure logic they run."""
