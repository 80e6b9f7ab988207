"""Benchmarks that measure (never assert): orchestration overhead, accuracy against compute."""
