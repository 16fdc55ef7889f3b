"""Benchmarks: Sandlot's figures beside the raw primitives they are built on."""
