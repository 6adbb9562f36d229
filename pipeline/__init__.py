"""Clarion: the Faust app, settings, command line, web views and metrics."""
