"""Compiled hot loops of rank-kernels (Cython, GIL released). Internal: use the `rank` package.

One module per kernel family; `rank_kernels` never imports `rank` and does no validation.
"""
