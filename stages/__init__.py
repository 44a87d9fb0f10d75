"""Thin pipeline entry points: parse paths from argv, read params, call seglib, write outputs."""
